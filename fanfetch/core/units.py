"""Human-readable quantities for summaries, progress bars and reports (decimal units, like `ls -h --si`)."""

from __future__ import annotations

__all__ = ["plural", "format_bytes"]


def format_bytes(count: float) -> str:
    """``1234567`` → ``"1.2 MB"``; whole bytes below 1 kB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 group``, ``2 groups``, ``1,234 files``."""
    return f"{count:,} {noun if count == 1 else (plural_form or noun + 's')}"

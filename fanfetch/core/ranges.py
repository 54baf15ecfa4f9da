"""Pure arithmetic of ranged downloads: how to split a file into parts for N connections, and how
to read a ``Content-Range`` header (RFC 9110 section 14.4). The HTTP adapter does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Part", "plan_parts", "parse_content_range"]


@dataclass(frozen=True)
class Part:
    """Bytes ``start`` (inclusive) to ``stop`` (exclusive) of a file."""

    index: int
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def header(self) -> str:
        """The ``Range`` request header value asking for exactly this part."""
        return f"bytes={self.start}-{self.stop - 1}"


def plan_parts(size: int, *, part_bytes: int, connections: int, min_rounds: int = 1) -> tuple[Part, ...]:
    """Split ``size`` bytes into parts of ``part_bytes / 2`` to ``part_bytes`` bytes, as a multiple
    of ``connections`` where possible, so every connection gets the same amount of work and none
    is left alone with the last part (the tail that keeps a download from finishing together).

    ``min_rounds``: at least that many rounds of parts while they stay >= ``part_bytes / 2``. A file
    hashed as it lands wants two: sha256 is sequential, so when a single round finishes together all
    but its first part are hashed after the last byte; with two, the first round is hashed while the
    second downloads and only the last round's tail is left."""
    if size < 1 or part_bytes < 2 or connections < 1 or min_rounds < 1:
        raise ValueError("size, part_bytes, connections and min_rounds must be >= 1 (part_bytes >= 2)")
    rounds = -(-size // (connections * part_bytes))
    rounds = max(rounds, min(min_rounds, size // (connections * (part_bytes // 2))))
    length = max(-(-size // (connections * rounds)), part_bytes // 2)
    starts = range(0, size, length)
    return tuple(Part(i, start, min(size, start + length)) for i, start in enumerate(starts))


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``"bytes 0-99/1000"`` → ``(0, 100, 1000)`` (start, exclusive stop, total; total None for
    ``/*``); None when the header is missing or not a satisfied byte range."""
    if not value:
        return None
    unit, _, rest = value.strip().partition(" ")
    span, _, total_text = rest.strip().partition("/")
    first, _, last = span.partition("-")
    if unit.lower() != "bytes" or not (_digits(first) and _digits(last)):
        return None
    start, stop = int(first), int(last) + 1
    if stop <= start:
        return None
    if total_text == "*":
        return start, stop, None
    if not _digits(total_text) or int(total_text) < stop:
        return None
    return start, stop, int(total_text)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()

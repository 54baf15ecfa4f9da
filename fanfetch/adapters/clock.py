"""The real clock: ``time.monotonic`` and ``time.sleep`` behind the ``Clock`` port."""

from __future__ import annotations

import time

__all__ = ["SystemClock"]


class SystemClock:
    """Wall-clock implementation of ``fanfetch.ports.Clock``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

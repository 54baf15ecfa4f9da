"""Retry pacing shared by the AWS adapters (SQS sends, ledger transactions, event publishing):
how many attempts, and exponential full-jitter pauses on an injected clock (tests never sleep)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from fanfetch.adapters.clock import SystemClock
from fanfetch.core.retry import backoff_delay
from fanfetch.ports import Clock

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """``max_attempts`` tries in all; after failed attempt n, pause ``backoff_delay(n)`` seconds."""

    max_attempts: int
    base_s: float
    max_s: float
    clock: Clock = field(default_factory=SystemClock)
    rand: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def attempts(self) -> range:
        """Attempt numbers, 1-based: ``for attempt in backoff.attempts(): ...``."""
        return range(1, self.max_attempts + 1)

    def is_last(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

    def pause(self, attempt: int) -> None:
        """Sleep (on the clock) before the attempt after ``attempt``."""
        self.clock.sleep(backoff_delay(attempt, base_s=self.base_s, max_s=self.max_s, rand=self.rand))

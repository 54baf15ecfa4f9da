"""No AWS request starts that could outlast the Lambda invocation: a botocore hook checks, before every
attempt (the retries botocore and our own loops make included), that the attempt's worst case fits.

A refused attempt raises ``DeadlineExceeded`` (retryable): the worker hands the record back instead of
being killed mid-call, which would lose the whole batch response.
"""

from __future__ import annotations

import re
from typing import Any

from fanfetch.errors import DeadlineExceeded
from fanfetch.ports import Clock

__all__ = ["CallDeadline", "attempt_need_s"]

# botocore standard mode: after attempt n it pauses at most min(2**(n-1), 20) s (throttling scale), raised by an
# x-amz-retry-after header to at most 5 s more (botocore/retries/standard.py ExponentialBackoff).
_MAX_BACKOFF_S = 20.0
_RETRY_AFTER_EXTRA_S = 5.0
_ATTEMPT = re.compile(r"attempt=(\d+);\s*max=(\d+)")  # botocore's amz-sdk-request header


def attempt_need_s(config: Any, attempt: int, max_attempts: int, *, then_pause_s: float = 0.0) -> float:
    """The time an attempt may take at worst, with the pause that may follow it: connect + read timeouts,
    plus botocore's longest pause before the next attempt (if there is one) or ``then_pause_s`` (the pause
    of a retry loop around the call) — so neither the attempt nor that pause can run past the end."""
    pause = min(2.0 ** (attempt - 1), _MAX_BACKOFF_S) + _RETRY_AFTER_EXTRA_S if attempt < max_attempts else 0.0
    return float(config.connect_timeout) + float(config.read_timeout) + max(pause, then_pause_s)


class CallDeadline:
    """The end of the current invocation (on ``clock``), set by the handler at each start; None: no end."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._ends_at: float | None = None

    def start(self, ends_at: float | None) -> None:
        """A new invocation: AWS calls must be over by ``ends_at`` (monotonic seconds of the clock)."""
        self._ends_at = ends_at

    def time_left_s(self) -> float | None:
        return None if self._ends_at is None else self._ends_at - self._clock.monotonic()

    def guard(self, client: Any, *, then_pause_s: float = 0.0) -> Any:
        """Make ``client`` check the time left before each attempt; return it. Registered first, so it runs
        before anything that answers ``before-send`` (moto in tests)."""
        config = client.meta.config

        def check(request: Any, event_name: str = "", **_: Any) -> None:
            left = self.time_left_s()
            if left is None:
                return
            header = request.headers.get("amz-sdk-request", b"")  # e.g. b"attempt=2; max=3"
            match = _ATTEMPT.search(header.decode("latin-1") if isinstance(header, bytes) else str(header))
            attempt, most = (int(match[1]), int(match[2])) if match else (1, 1)
            need = attempt_need_s(config, attempt, most, then_pause_s=then_pause_s)
            if left < need:
                operation = event_name.rsplit(".", 1)[-1] or "AWS call"
                raise DeadlineExceeded(f"{operation} not started: {max(left, 0.0):.1f} s left before the invocation "
                                       f"ends, attempt {attempt} of {most} may take {need:.0f} s; it comes back")

        client.meta.events.register_first("before-send", check)
        return client

"""Per-host politeness of one fetcher (one worker): a cap on requests in flight per host, a
requests-per-second pace per host, and AIMD slow-down when a host answers 429/503 (issue 5 point 6).
The pacing math is ``fanfetch.core.politeness``; this module holds the locks and does the waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from fanfetch.core.politeness import AimdPolicy, HostPace
from fanfetch.errors import RetryableFetchError, RetryAfterTooLong
from fanfetch.ports import Clock

__all__ = ["HostGate", "HostWaitTooLong", "THROTTLE_STATUSES"]

THROTTLE_STATUSES = frozenset({429, 503})  # "slow down" from the host, not a broken file
_SLOT_POLL_S = 0.25  # re-check the deadline this often while waiting for a free slot


class HostWaitTooLong(Exception):
    """Internal to the adapter: a request could not start before its deadline; ``error`` is what
    the caller should raise (retryable: a later delivery may find the host less busy)."""

    def __init__(self, error: RetryableFetchError):
        super().__init__(error)
        self.error = error


@dataclass
class _Host:
    pace: HostPace
    in_flight: int = 0


class HostGate:
    """Admits requests per host: ``enter`` waits (through ``clock``) for a slot and for the pace,
    never past the request's deadline, and returns the function that frees the slot."""

    def __init__(
        self,
        *,
        concurrency: int | None,
        rps: float | None,
        clock: Clock,
        policy: AimdPolicy = AimdPolicy(),  # noqa: B008 - frozen
    ):
        self._concurrency = concurrency
        self._rps = rps
        self._clock = clock
        self._policy = policy
        self._hosts: dict[str, _Host] = {}
        self._cond = threading.Condition()

    def enter(self, host: str, *, url: str, end: float) -> Callable[[], None]:
        """Wait until a request to ``host`` may start; raise HostWaitTooLong if not before ``end``."""
        clock = self._clock
        with self._cond:
            state = self._host(host)
            cap = self._concurrency
            while cap is not None and state.in_flight >= cap:
                remaining = end - clock.monotonic()
                if remaining <= 0:
                    raise HostWaitTooLong(
                        RetryableFetchError(url, f"{host}: no free per-host slot (cap {cap}) before the deadline")
                    )
                self._cond.wait(min(remaining, _SLOT_POLL_S))
            now = clock.monotonic()
            wait_s = state.pace.reserve(now, latest=end)
            if wait_s is None:
                blocked_s = state.pace.blocked_until - now
                if blocked_s > 0 and now + blocked_s > end:
                    error: RetryableFetchError = RetryAfterTooLong(
                        url, f"{host} asked for a pause past the deadline", retry_after_s=blocked_s
                    )
                else:
                    error = RetryableFetchError(
                        url, f"{host}: the per-host request rate leaves no start before the deadline"
                    )
                raise HostWaitTooLong(error)
            state.in_flight += 1
        if wait_s > 0:
            clock.sleep(wait_s)
        released = False

        def release() -> None:
            nonlocal released
            with self._cond:
                if not released:
                    released = True
                    state.in_flight -= 1
                    self._cond.notify()

        return release

    def record(self, host: str, status: int, *, retry_after_s: float | None = None) -> None:
        """Feed a response status back: 429/503 slow the host down, a success speeds it up."""
        with self._cond:
            pace = self._host(host).pace
            if status in THROTTLE_STATUSES:
                pace.on_throttle(self._clock.monotonic(), retry_after_s=retry_after_s)
            elif status < 400:
                pace.on_success()

    def rate(self, host: str) -> float | None:
        """The host's current requests/s (None: unlimited); for tests and logs."""
        with self._cond:
            return self._host(host).pace.rate

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(HostPace(self._rps, policy=self._policy, now=self._clock.monotonic()))
        return state

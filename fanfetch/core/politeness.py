"""The pure pacing policy of one origin host: a token bucket for requests per second, and AIMD
(halve on 429/503, add back a little per success) so a worker slows down when a host pushes back.
No clock and no threads: callers pass ``now`` (monotonic seconds) and do the waiting themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AimdPolicy", "FleetBound", "HostPace", "bound_fleet", "worker_share_rps"]

_OBSERVE_WINDOW_S = 1.0  # request-rate sample window of an unlimited host, for its first throttle


@dataclass(frozen=True)
class AimdPolicy:
    """How a host's rate reacts to push-back: multiplicative decrease, additive increase, bounded."""

    decrease_factor: float = 0.5  # rate *= this on each 429/503 (TCP's halving)
    increase_fraction: float = 0.02  # each success adds this fraction of the ceiling (50 successes: full)
    floor_rps: float = 0.1  # never slower than one request per 10 s
    max_block_s: float = 60.0  # longest host-wide pause a Retry-After may impose

    def __post_init__(self) -> None:
        if not 0 < self.decrease_factor < 1:
            raise ValueError("AimdPolicy.decrease_factor must be in (0, 1)")
        if not 0 < self.increase_fraction <= 1:
            raise ValueError("AimdPolicy.increase_fraction must be in (0, 1]")
        if self.floor_rps <= 0 or self.max_block_s < 0:
            raise ValueError("AimdPolicy.floor_rps must be > 0 and max_block_s >= 0")


class HostPace:
    """Request pacing of one host: when may the next request start?

    ``rps`` None means unlimited until the host first pushes back; from then on the host runs at
    half the rate it was seen at, recovering additively towards that rate (then unlimited again).
    Not thread-safe: the adapter holds a lock around each call.
    """

    def __init__(self, rps: float | None, *, policy: AimdPolicy = AimdPolicy(), now: float = 0.0):  # noqa: B008
        if rps is not None and rps <= 0:
            raise ValueError("rps must be > 0 or None")
        self._policy = policy
        self.configured_rps = rps
        self.rate: float | None = rps  # current requests/s; None: unlimited
        self._ceiling: float | None = rps
        self._next_free = now  # when the next request may start (the bucket, burst of one)
        self.blocked_until = now  # Retry-After for the whole host
        self._window_start = now
        self._window_count = 0
        self._seen_rps = 0.0

    def reserve(self, now: float, *, latest: float) -> float | None:
        """Claim the next start slot: seconds to wait from ``now`` (0: go), or None when that slot
        would start after ``latest`` (nothing is claimed then)."""
        start = max(now, self.blocked_until)
        if self.rate is not None:
            start = max(start, self._next_free)
        if start > latest:
            return None
        if self.rate is not None:
            self._next_free = start + 1.0 / self.rate
        self._observe(start)
        return start - now

    def on_throttle(self, now: float, *, retry_after_s: float | None = None) -> None:
        """The host answered 429/503: halve its rate, and pause it all if it named a time."""
        policy = self._policy
        if self.rate is None:
            self._ceiling = max(policy.floor_rps, self._observed_rps(now))
            self.rate = self._ceiling
        self.rate = max(policy.floor_rps, self.rate * policy.decrease_factor)
        # Requests already spaced for the old rate keep their slots; new ones get the slower spacing.
        self._next_free = max(self._next_free, now + 1.0 / self.rate)
        if retry_after_s is not None and retry_after_s > 0:
            self.blocked_until = max(self.blocked_until, now + min(retry_after_s, policy.max_block_s))

    def on_success(self) -> None:
        """A request to the host succeeded: recover additively towards the ceiling."""
        if self.rate is None or self._ceiling is None:
            return
        self.rate = min(self._ceiling, self.rate + self._policy.increase_fraction * self._ceiling)
        if self.configured_rps is None and self.rate >= self._ceiling:
            self.rate = self._ceiling = None  # fully recovered: unlimited again

    def _observe(self, start: float) -> None:
        if start - self._window_start >= _OBSERVE_WINDOW_S:
            self._seen_rps = self._window_count / (start - self._window_start)
            self._window_start, self._window_count = start, 0
        self._window_count += 1

    def _observed_rps(self, now: float) -> float:
        # A young window is divided by the full window length: an underestimate, i.e. cautious.
        current = self._window_count / max(now - self._window_start, _OBSERVE_WINDOW_S)
        return max(self._seen_rps, current)


@dataclass(frozen=True)
class FleetBound:
    """What per-worker per-host limits add up to across every concurrent worker invocation."""

    invocations: int  # concurrent worker invocations (the event source's maximum concurrency)
    in_flight: int  # requests in flight to one host, fleet-wide, at most
    rps: float | None  # request starts per second to one host, fleet-wide (None: unlimited)

    def min_wall_s(self, files: int) -> float | None:
        """Shortest time ``files`` downloads from one host can take under the rate bound."""
        return None if self.rps is None else files / self.rps


def bound_fleet(
    *, invocations: int, files_in_flight: int, per_host_concurrency: int | None, per_host_rps: float | None
) -> FleetBound:
    """The fleet-wide per-host bound: ``invocations`` × the per-worker limit (issue 5 point 6).

    Every worker paces itself alone (no shared state), so a host may see the sum of them all;
    a worker never has more than ``files_in_flight`` requests out, whatever its per-host cap.
    """
    per_worker = files_in_flight if per_host_concurrency is None else min(per_host_concurrency, files_in_flight)
    return FleetBound(
        invocations=invocations,
        in_flight=invocations * per_worker,
        rps=None if per_host_rps is None else invocations * per_host_rps,
    )


def worker_share_rps(per_host_rps: float | None, fleet_per_host_rps: float | None, invocations: int) -> float | None:
    """One worker invocation's requests per second per host: ``per_host_rps``, or ``fleet_per_host_rps`` shared
    among ``invocations`` (the stricter of the two when both are given); None: no limit. The stack sets it
    (FANFETCH_PER_HOST_RPS) and ``fanfetch plan`` models it."""
    shares = [per_host_rps] if per_host_rps is not None else []
    if fleet_per_host_rps is not None:
        shares.append(fleet_per_host_rps / invocations)
    return min(shares) if shares else None

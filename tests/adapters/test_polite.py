"""Per-host politeness of one CurlFetcher against loopback origins: requests per second (on a
FakeClock: waiting costs no real time), the per-host concurrency cap (counted at the origin),
AIMD after 429/503, host-wide Retry-After, deadlines, and hosts kept apart."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.models import Source
from fanfetch.errors import RetryableFetchError, RetryAfterTooLong
from tests.fakes import FakeClock
from tests.origin_faults import FaultOrigin, ok, rendezvous, retry_after, status


def _fetcher(clock: FakeClock, *origins: FaultOrigin, **settings) -> CurlFetcher:
    options = {"max_attempts": 3, "backoff_base_s": 0.5, "backoff_max_s": 8.0} | settings
    return CurlFetcher(
        HttpSettings(**options),
        clock=clock,
        guard=AddressGuard(allow_hosts=[f"127.0.0.1:{o.port}" for o in origins]),
        rand=lambda: 0.0,  # no jitter: every simulated second below is the pacing's
    )


def _get(fetcher: CurlFetcher, url: str, **kwargs) -> bytes:
    dest = io.BytesIO()
    fetcher.fetch(Source(url), dest, **kwargs)
    return dest.getvalue()


@pytest.fixture
def other_origin():
    origin = FaultOrigin()
    yield origin
    origin.close()


def test_requests_to_one_host_are_paced_at_the_rate(fault_origin):
    # GIVEN a fetcher limited to 5 requests/s per host, on a simulated clock
    clock = FakeClock()
    url = fault_origin.add("/f", ok(b"x"))
    started = clock.monotonic()
    with _fetcher(clock, fault_origin, per_host_rps=5.0) as fetcher:
        # WHEN 10 requests are made to that host
        for _ in range(10):
            assert _get(fetcher, url) == b"x"
    # THEN they spanned at least (N - 1) / R = 1.8 simulated seconds, and all reached the origin
    assert clock.monotonic() - started >= 1.8 - 1e-9
    assert fault_origin.requests("/f") == 10


def test_the_per_host_concurrency_cap_is_never_exceeded(fault_origin):
    # GIVEN an origin that holds each request until 2 are in flight together
    behaviour = rendezvous(b"ok", parties=2)
    url = fault_origin.add("/r", behaviour)
    with _fetcher(FakeClock(), fault_origin, per_host_concurrency=2, pool_size=8) as fetcher:
        # WHEN 8 threads fetch from it at once
        with ThreadPoolExecutor(max_workers=8) as pool:
            bodies = list(pool.map(lambda _: _get(fetcher, url), range(8)))
    # THEN all succeed, and the origin never held more than 2 (and did hold 2)
    assert bodies == [b"ok"] * 8
    assert behaviour.max_together == 2


def test_without_a_cap_the_same_threads_do_overlap(fault_origin):
    # GIVEN the same origin, asking for 4 together, and no per-host cap
    behaviour = rendezvous(b"ok", parties=4)
    url = fault_origin.add("/r", behaviour)
    with _fetcher(FakeClock(), fault_origin, pool_size=8) as fetcher:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda _: _get(fetcher, url), range(4)))
    # THEN the counter does see concurrency (so the test above could fail)
    assert behaviour.max_together == 4


def test_a_429_halves_the_host_rate_and_successes_bring_it_back(fault_origin):
    # GIVEN a host at 10 requests/s that answers 429 once
    clock = FakeClock()
    url = fault_origin.add("/f", status(429, ok(b"x"), times=1))
    with _fetcher(clock, fault_origin, per_host_rps=10.0) as fetcher:
        host = f"127.0.0.1:{fault_origin.port}"
        # WHEN the file is fetched (the 429 is retried)
        assert _get(fetcher, url) == b"x"
        # THEN the host's rate dropped to half, plus one success' worth of recovery
        assert fetcher.gate.rate(host) == pytest.approx(5.0 + 0.2)
        # WHEN more requests succeed / THEN the rate climbs back to the setting, no further
        for _ in range(30):
            _get(fetcher, url)
        assert fetcher.gate.rate(host) == pytest.approx(10.0)


def test_retry_after_pauses_every_request_to_that_host(fault_origin):
    # GIVEN a host that answered one request with 503 Retry-After: 5
    clock = FakeClock()
    busy = fault_origin.add("/busy", retry_after(5, ok(b"late")))
    other = fault_origin.add("/other", ok(b"y"))
    with _fetcher(clock, fault_origin, per_host_concurrency=4, max_attempts=1) as fetcher:
        with pytest.raises(RetryableFetchError):
            _get(fetcher, busy)
        paused_at = clock.monotonic()
        # WHEN another file on the same host is fetched
        assert _get(fetcher, other) == b"y"
    # THEN it started only after the host's pause (5 simulated seconds)
    assert clock.monotonic() - paused_at == pytest.approx(5.0)


def test_a_pause_past_the_deadline_hands_the_work_back_without_a_request(fault_origin):
    clock = FakeClock()
    busy = fault_origin.add("/busy", retry_after(60, ok()))
    other = fault_origin.add("/other", ok())
    with _fetcher(clock, fault_origin, per_host_concurrency=4, max_attempts=1) as fetcher:
        with pytest.raises(RetryableFetchError):
            _get(fetcher, busy)
        # GIVEN the host paused for 60 s / WHEN a file must finish within 10 s
        with pytest.raises(RetryAfterTooLong):
            _get(fetcher, other, deadline=clock.monotonic() + 10)
    # THEN nothing was sent and nothing slept
    assert fault_origin.requests("/other") == 0 and clock.sleeps == []


def test_a_rate_wait_never_runs_past_the_deadline(fault_origin):
    # GIVEN one request per second, and one request just made
    clock = FakeClock()
    url = fault_origin.add("/f", ok())
    with _fetcher(clock, fault_origin, per_host_rps=1.0) as fetcher:
        _get(fetcher, url)
        # WHEN the next one must start within 0.5 s / THEN retryable at once, without a request
        with pytest.raises(RetryableFetchError) as caught:
            _get(fetcher, url, deadline=clock.monotonic() + 0.5)
    assert "rate" in caught.value.reason
    assert fault_origin.requests("/f") == 1 and clock.sleeps == []


def test_two_hosts_do_not_slow_each_other(fault_origin, other_origin):
    # GIVEN two hosts, each limited to 1 request/s
    clock = FakeClock()
    a = fault_origin.add("/a", ok())
    b = other_origin.add("/b", ok())
    started = clock.monotonic()
    with _fetcher(clock, fault_origin, other_origin, per_host_rps=1.0) as fetcher:
        # WHEN each gets 2 requests, interleaved
        for url in (a, b, a, b):
            _get(fetcher, url)
    # THEN it took 1 simulated second (each host's own spacing), not 3
    assert clock.monotonic() - started == pytest.approx(1.0)


def test_a_429_on_one_host_leaves_the_other_at_full_rate(fault_origin, other_origin):
    clock = FakeClock()
    a = fault_origin.add("/a", status(429, ok(), times=1))
    b = other_origin.add("/b", ok())
    with _fetcher(clock, fault_origin, other_origin, per_host_rps=4.0) as fetcher:
        _get(fetcher, a)
        _get(fetcher, b)
        # THEN only the host that pushed back slowed down
        assert fetcher.gate.rate(f"127.0.0.1:{fault_origin.port}") < 4.0
        assert fetcher.gate.rate(f"127.0.0.1:{other_origin.port}") == 4.0


def test_without_per_host_settings_there_is_no_gate():
    assert CurlFetcher(HttpSettings()).gate is None


@pytest.mark.parametrize(
    ("field", "value"), [("per_host_rps", 0), ("per_host_rps", -1.0), ("per_host_concurrency", 0)]
)
def test_bad_politeness_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        HttpSettings(**{field: value})

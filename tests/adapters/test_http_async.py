"""CurlFetcher.fetch_async against an origin on 127.0.0.1: what it adds to ``fetch`` (whose fault cases
tests/adapters/test_http.py runs through both): at most ``pool_size`` files at once, queued files that
can be cancelled before any request, the ``before`` check run as a file starts."""

from __future__ import annotations

import gc
import io
import weakref

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.models import Source
from fanfetch.errors import RetryableFetchError
from tests.fakes import FakeClock
from tests.origin_faults import accept_never_answer, ok, rendezvous


@pytest.fixture
def make(fault_origin):
    made: list[CurlFetcher] = []

    def build(**settings) -> CurlFetcher:
        fetcher = CurlFetcher(HttpSettings(**({"max_attempts": 2} | settings)), clock=FakeClock(),
                              guard=AddressGuard(allow_hosts=[f"127.0.0.1:{fault_origin.port}"]))
        made.append(fetcher)
        return fetcher

    yield build
    for fetcher in made:
        fetcher.close()


def test_at_most_pool_size_files_run_at_once_and_the_rest_follow_in_turn(fault_origin, make):
    # GIVEN an origin that answers only when 3 requests wait together, and a fetcher of 3 connections
    meeting = rendezvous(b"x" * 100, parties=3, timeout_s=20)
    url = fault_origin.add("/r", meeting)
    fetcher = make(pool_size=3)
    # WHEN 9 files are asked for at once, without a thread each
    futures = [fetcher.fetch_async(Source(url), io.BytesIO()) for _ in range(9)]
    results = [f.result(timeout=60) for f in futures]
    # THEN every file arrives whole, and never were more than 3 requests in flight
    assert [r.bytes for r in results] == [100] * 9
    assert meeting.max_together == 3
    assert fault_origin.requests("/r") == 9


def test_a_queued_file_cancelled_before_its_turn_is_never_requested(fault_origin, make):
    # GIVEN one connection, held by a file whose origin never answers (its deadline ends it)
    fetcher = make(pool_size=1)
    clock_now = 1000.0  # FakeClock's start: the deadline is 3 s of libcurl's real time from now
    hung = fetcher.fetch_async(Source(fault_origin.add("/hang", accept_never_answer())), io.BytesIO(),
                               deadline=clock_now + 3)
    queued = fetcher.fetch_async(Source(fault_origin.add("/later", ok(b"later"))), io.BytesIO())
    # WHEN the queued file is cancelled while the first one still holds the connection
    cancelled = queued.cancel()
    # THEN it never reaches the origin; the first one ends on its deadline, retryable
    assert cancelled and queued.cancelled()
    error = hung.exception(timeout=60)
    assert isinstance(error, RetryableFetchError) and "deadline" in error.reason
    after = fetcher.fetch_async(Source(fault_origin.url("/later")), io.BytesIO()).result(timeout=60)
    assert after.bytes == 5 and fault_origin.requests("/later") == 1  # only this later one


def test_before_runs_as_each_file_starts_and_its_error_is_that_files_outcome(fault_origin, make):
    # GIVEN one connection and three files whose start is recorded; the second one's check refuses
    fetcher = make(pool_size=1)
    url = fault_origin.add("/f", ok(b"abc"))
    started: list[int] = []

    def before(n: int):
        def check() -> None:
            started.append(n)
            if n == 2:
                raise ValueError("not this one")
        return check

    futures = [fetcher.fetch_async(Source(url), io.BytesIO(), before=before(n)) for n in (1, 2, 3)]
    # WHEN they run
    outcomes = [f.exception(timeout=60) for f in futures]
    # THEN each check ran once, in order; the refused file made no request and the others went on
    assert started == [1, 2, 3]
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ValueError)
    assert fault_origin.requests("/f") == 2


def test_after_close_a_file_fails_instead_of_waiting(fault_origin, make):
    fetcher = make()
    fetcher.close()
    future = fetcher.fetch_async(Source(fault_origin.add("/f", ok())), io.BytesIO())
    assert isinstance(future.exception(timeout=10), RuntimeError)


def test_a_finished_file_is_freed_by_reference_counting_not_left_to_the_cycle_collector(fault_origin, make):
    # GIVEN the cycle collector off (a reference cycle per file made a run spend ~10 % of its time in gc)
    fetcher = make()
    url = fault_origin.add("/f", ok(b"abc"))
    gc.collect()
    gc.disable()
    try:
        # WHEN a file is fetched, its result read, and the fetcher closed (its handles hold the last request)
        future = fetcher.fetch_async(Source(url), io.BytesIO())
        assert future.result(timeout=60).bytes == 3
        gone = weakref.ref(future)
        del future
        fetcher.close()
        # THEN nothing keeps the file's future alive: no cycle through its request
        assert gone() is None
    finally:
        gc.enable()

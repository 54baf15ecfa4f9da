"""CurlFetcher against a misbehaving origin on 127.0.0.1: each fault either recovers within the
retry budget (with the expected number of origin requests) or fails fast with the right error.

Backoff sleeps go to a FakeClock; only the deadline watchdog runs on real time, with deadlines of
0.3 s, so trickles and stalls end quickly.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.models import Source
from fanfetch.errors import (
    FetchError,
    PermanentFetchError,
    RetryableFetchError,
    RetryAfterTooLong,
)
from tests.fakes import FakeClock
from tests.origin_faults import (
    FaultOrigin,
    accept_never_answer,
    close_delimited_cut,
    gzip_bomb,
    http_date,
    ignores_range,
    lying_length,
    ok,
    redirect,
    redirect_loop,
    refused_port,
    reset_mid_body,
    retry_after,
    sequence,
    short_body,
    stall_after_headers,
    status,
    trickle,
)

BODY = bytes(range(256)) * 8  # 2 KiB, every byte value
TINY_DEADLINE_S = 0.3


class Harness:
    """A fetcher wired to the origin: FakeClock for backoff, mid-window jitter, origin allow-listed."""

    def __init__(self, origin: FaultOrigin, mode: str = "fetch", **settings):
        self.origin = origin
        self.mode = mode  # "fetch" (a waiting thread) or "fetch_async" (a future, no thread per file)
        self.clock = FakeClock()
        options = {"max_attempts": 4, "backoff_base_s": 0.5, "backoff_max_s": 8.0} | settings
        self.settings = HttpSettings(**options)
        self.fetcher = CurlFetcher(
            self.settings,
            clock=self.clock,
            guard=AddressGuard(allow_hosts=[f"127.0.0.1:{origin.port}"]),
            rand=lambda: 0.5,
        )

    def fetch(self, path_or_url: str, *, deadline: float | None = None, **source):
        url = path_or_url if "://" in path_or_url else self.origin.url(path_or_url)
        dest = io.BytesIO()
        if self.mode == "fetch_async":
            result = self.fetcher.fetch_async(Source(url, **source), dest, deadline=deadline).result(timeout=60)
        else:
            result = self.fetcher.fetch(Source(url, **source), dest, deadline=deadline)
        return result, dest.getvalue()

    def fail(self, path: str, *, deadline: float | None = None, **source) -> FetchError:
        with pytest.raises(FetchError) as caught:
            self.fetch(path, deadline=deadline, **source)
        return caught.value


@pytest.fixture(params=["fetch", "fetch_async"])
def make(fault_origin, request):
    made: list[Harness] = []

    def build(**settings) -> Harness:
        harness = Harness(fault_origin, request.param, **settings)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.fetcher.close()


@pytest.fixture
def h(make) -> Harness:
    return make()


# --- success ------------------------------------------------------------------------------------


def test_a_good_response_is_stored_whole_with_its_metadata(h):
    # GIVEN an origin serving a file with validators
    h.origin.add("/f.csv", ok(BODY, {"ETag": '"v1"', "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    # WHEN it is fetched
    result, data = h.fetch("/f.csv")
    # THEN the bytes, the count and the validators are returned after one request
    assert data == BODY
    assert (result.url, result.bytes, result.attempts) == (h.origin.url("/f.csv"), len(BODY), 1)
    assert (result.etag, result.last_modified) == ('"v1"', "Wed, 21 Oct 2015 07:28:00 GMT")
    # AND the origin saw our User-Agent and no Range
    request = h.origin.log("/f.csv")[0]
    assert request.headers["user-agent"].startswith("fanfetch/")
    assert "range" not in request.headers


def test_a_gzip_encoded_body_is_stored_decoded(h):
    # GIVEN an origin compressing on the fly (Content-Length is the compressed size)
    h.origin.add("/z", ok(gzip.compress(BODY), {"Content-Encoding": "gzip"}))
    # WHEN fetched / THEN the decoded bytes are stored and counted
    result, data = h.fetch("/z")
    assert data == BODY and result.bytes == len(BODY)


def test_matching_integrity_facts_pass(h):
    h.origin.add("/f", ok(BODY))
    # GIVEN the manifest knows size, sha256 and md5 / WHEN fetched / THEN all three are verified
    result, _ = h.fetch(
        "/f", size=len(BODY), sha256=hashlib.sha256(BODY).hexdigest(), md5=hashlib.md5(BODY).hexdigest()
    )
    assert result.attempts == 1


# --- retryable statuses -------------------------------------------------------------------------


def test_503_twice_then_success_recovers_with_backoff(h):
    # GIVEN an origin that answers 503 twice, then the file
    h.origin.add("/f", status(503, then=ok(BODY), times=2))
    # WHEN fetched
    result, data = h.fetch("/f")
    # THEN it recovers on the third request, after two full-jitter backoffs (rand=0.5: half the window)
    assert data == BODY
    assert result.attempts == 3 and h.origin.requests("/f") == 3
    assert h.clock.sleeps == [0.25, 0.5]


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504, 507])
def test_transient_statuses_are_retried(h, code):
    # GIVEN one transient failure before success
    h.origin.add("/f", status(code, then=ok(BODY), times=1))
    # WHEN fetched / THEN the second request succeeds
    result, _ = h.fetch("/f")
    assert result.attempts == 2 and h.origin.requests("/f") == 2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 410, 451])
def test_permanent_statuses_fail_after_one_request(h, code):
    # GIVEN an origin answering a permanent client error
    h.origin.add("/f", status(code))
    # WHEN fetched
    error = h.fail("/f")
    # THEN it fails at once: the right type and status, one request, no backoff
    assert isinstance(error, PermanentFetchError)
    assert (error.status, error.attempts, error.url) == (code, 1, h.origin.url("/f"))
    assert h.origin.requests("/f") == 1 and h.clock.sleeps == []


def test_retries_stop_after_max_attempts_with_the_last_error(h):
    # GIVEN an origin that never recovers
    h.origin.add("/f", status(503))
    # WHEN fetched
    error = h.fail("/f")
    # THEN exactly max_attempts requests were made and the error says so
    assert isinstance(error, RetryableFetchError) and not isinstance(error, RetryAfterTooLong)
    assert (error.status, error.attempts) == (503, 4)
    assert h.origin.requests("/f") == 4
    assert "after 4 attempts" in str(error)


def test_full_jitter_backoff_stays_within_its_windows(make):
    # GIVEN real randomness (seeded) and an origin that never recovers
    h = make(max_attempts=6, backoff_base_s=0.5, backoff_max_s=2.0)
    h.fetcher._rand = random.Random(3).random  # noqa: SLF001 - seeded, so the test is repeatable
    h.origin.add("/f", status(500))
    h.fail("/f")
    # THEN each of the 5 waits lies in [0, min(cap, base * 2**n))
    windows = [0.5, 1.0, 2.0, 2.0, 2.0]
    assert len(h.clock.sleeps) == 5
    assert all(0.0 <= s < w for s, w in zip(h.clock.sleeps, windows, strict=True))


def test_backoff_never_sleeps_past_the_deadline(make):
    # GIVEN long backoff and a caller deadline 1 s away
    h = make(backoff_base_s=10.0, backoff_max_s=60.0)
    h.origin.add("/f", status(503))
    # WHEN the first attempt fails with 5 s of backoff due (rand=0.5) / THEN we give up without sleeping
    error = h.fail("/f", deadline=h.clock.monotonic() + 1.0)
    assert isinstance(error, RetryableFetchError) and error.attempts == 1
    assert h.clock.sleeps == []


def test_a_deadline_already_passed_makes_no_request(h):
    h.origin.add("/f", ok(BODY))
    # GIVEN a deadline in the past / WHEN fetched / THEN no request at all, and a retryable error
    error = h.fail("/f", deadline=h.clock.monotonic() - 1)
    assert isinstance(error, RetryableFetchError) and error.attempts == 0
    assert h.origin.requests("/f") == 0


# --- Retry-After ----------------------------------------------------------------------------------


def test_retry_after_seconds_is_honoured(h):
    # GIVEN a 503 asking for 7 s (far more than the 0.25 s backoff)
    h.origin.add("/f", retry_after(7, then=ok(BODY)))
    # WHEN fetched / THEN we waited at least 7 s before the successful second request
    result, _ = h.fetch("/f")
    assert result.attempts == 2
    assert h.clock.sleeps and h.clock.sleeps[0] >= 7


def test_retry_after_http_date_is_honoured(make):
    # GIVEN a 429 asking to come back at a date 30 s from now (within backoff_max_s)
    h = make(backoff_max_s=60.0)
    h.origin.add("/f", retry_after(http_date(time.time() + 30), then=ok(BODY), code=429))
    # WHEN fetched / THEN the wait is about 30 s (the date has whole-second precision)
    h.fetch("/f")
    assert 28.5 <= h.clock.sleeps[0] <= 30


def test_retry_after_beyond_the_deadline_hands_the_work_back_at_once(h):
    # GIVEN a 503 asking for an hour and a caller deadline 100 s away
    h.origin.add("/f", retry_after(3600, then=ok(BODY)))
    # WHEN fetched
    error = h.fail("/f", deadline=h.clock.monotonic() + 100)
    # THEN RetryAfterTooLong right away: one request, no sleep, the wait and status recorded
    assert isinstance(error, RetryAfterTooLong)
    assert (error.status, error.attempts, error.retry_after_s) == (503, 1, 3600)
    assert h.clock.sleeps == [] and h.origin.requests("/f") == 1


def test_retry_after_within_the_deadline_is_capped_at_backoff_max(make):
    # GIVEN backoff_max_s=8 and a server asking for 30 s (within the 900 s file deadline)
    h = make(backoff_max_s=8.0)
    h.origin.add("/f", retry_after(30, then=ok(BODY)))
    # WHEN fetched / THEN we waited the cap, not 30 s, and recovered
    result, _ = h.fetch("/f")
    assert h.clock.sleeps == [8.0] and result.attempts == 2


# --- broken bodies --------------------------------------------------------------------------------


def test_reset_mid_body_is_retried_and_dest_holds_only_the_good_body(h):
    # GIVEN a first response reset after 1000 bytes, then a good (shorter) one
    h.origin.add("/f", sequence(reset_mid_body(BODY, after_bytes=1000), ok(b"second")))
    # WHEN fetched
    result, data = h.fetch("/f")
    # THEN dest was rewound and truncated: exactly the second body, after two requests
    assert data == b"second"
    assert result.attempts == 2 and h.origin.requests("/f") == 2


def test_short_body_is_retried_then_recovers(h):
    h.origin.add("/f", sequence(short_body(BODY, after_bytes=100), ok(BODY)))
    # GIVEN one body shorter than its Content-Length / THEN the retry gets the whole file
    result, data = h.fetch("/f")
    assert data == BODY and result.attempts == 2


def test_body_always_short_fails_as_retryable_naming_the_cause(h):
    # GIVEN an origin that always closes before Content-Length bytes
    h.origin.add("/f", short_body(BODY, after_bytes=100))
    # WHEN fetched / THEN the budget is spent and the error says why
    error = h.fail("/f")
    assert isinstance(error, RetryableFetchError)
    assert "shorter than Content-Length" in error.reason and error.attempts == 4


def test_close_delimited_body_cut_short_is_caught_by_the_expected_size(h):
    # GIVEN a body without Content-Length, cut early once (indistinguishable from a complete body...)
    h.origin.add("/f", sequence(close_delimited_cut(BODY, after_bytes=300), ok(BODY)))
    # WHEN fetched with the size the manifest knows
    result, data = h.fetch("/f", size=len(BODY))
    # THEN the short copy was rejected and the retry stored the whole file
    assert data == BODY and result.attempts == 2


def test_checksum_mismatch_is_retried_and_finally_reported(h):
    # GIVEN an origin that always serves a truncated close-delimited body
    h.origin.add("/f", close_delimited_cut(BODY, after_bytes=300))
    # WHEN fetched with the file's sha256
    error = h.fail("/f", sha256=hashlib.sha256(BODY).hexdigest())
    # THEN every attempt was used and the error says checksum mismatch
    assert isinstance(error, RetryableFetchError)
    assert "checksum mismatch" in error.reason and error.attempts == 4


def test_md5_mismatch_is_reported(h):
    h.origin.add("/f", ok(BODY))
    # GIVEN a wrong md5 in the manifest / THEN the error names the digest
    error = h.fail("/f", md5="0" * 32)
    assert "checksum mismatch: md5" in error.reason


def test_an_origin_ignoring_range_cannot_duplicate_bytes(h):
    # GIVEN a body reset half-way, then an origin that would ignore any Range header
    h.origin.add("/f", sequence(reset_mid_body(BODY, after_bytes=1024), ignores_range(BODY)))
    # WHEN fetched
    _, data = h.fetch("/f")
    # THEN the retry starts from byte 0 (no Range sent) and dest holds the file exactly once
    assert data == BODY
    assert all("range" not in r.headers for r in h.origin.log("/f"))


# --- size limits ------------------------------------------------------------------------------------


def test_gzip_bomb_is_stopped_at_max_file_bytes_of_decoded_data(make):
    # GIVEN a limit of 1 MiB and a tiny gzip body that decodes to 16 MiB
    h = make(max_file_bytes=2**20, chunk_bytes=64 * 1024)
    h.origin.add("/bomb", gzip_bomb(16 * 2**20))
    # WHEN fetched
    error = h.fail("/bomb")
    # THEN it fails permanently after one request, without writing past the limit
    assert isinstance(error, PermanentFetchError) and "too large" in error.reason
    assert error.attempts == 1 and h.origin.requests("/bomb") == 1


def test_content_length_above_the_limit_is_refused_before_reading(make):
    # GIVEN an origin declaring 2 MiB against a 1 MiB limit
    h = make(max_file_bytes=2**20)
    h.origin.add("/big", ok(b"x" * 10, {"Content-Length": str(2 * 2**20)}))
    # WHEN fetched / THEN refused at once, permanently
    error = h.fail("/big")
    assert isinstance(error, PermanentFetchError) and "Content-Length" in error.reason
    assert error.status == 200 and error.attempts == 1


def test_a_lying_content_length_never_lets_more_bytes_in(make):
    # GIVEN an origin declaring 10 bytes and sending 4 MiB (over the 1 MiB limit)
    h = make(max_file_bytes=2**20)
    h.origin.add("/lie", lying_length(declared=10, actual=4 * 2**20))
    # WHEN fetched / THEN exactly the declared 10 bytes are stored; the rest is never read
    result, data = h.fetch("/lie")
    assert data == b"L" * 10 and result.bytes == 10


# --- timeouts and the deadline watchdog ------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour", [trickle(interval_s=0.02), stall_after_headers(), accept_never_answer()]
)
def test_deadline_cuts_trickles_and_stalls(make, behaviour):
    # GIVEN read timeouts far longer than the test, and an origin that trickles / stalls / never answers
    h = make(read_timeout_s=60.0)
    h.origin.add("/slow", behaviour)
    # WHEN fetched with a caller deadline 0.3 s away
    started = time.monotonic()
    error = h.fail("/slow", deadline=h.clock.monotonic() + TINY_DEADLINE_S)
    elapsed = time.monotonic() - started
    # THEN the attempt is cut near the deadline, retryably, and no further attempt starts
    assert isinstance(error, RetryableFetchError)
    assert error.attempts == 1 and h.origin.requests("/slow") == 1
    assert TINY_DEADLINE_S * 0.9 <= elapsed < TINY_DEADLINE_S + 1.0


def test_the_file_deadline_setting_alone_cuts_a_trickle(make):
    # GIVEN no caller deadline but file_deadline_s=0.3
    h = make(file_deadline_s=TINY_DEADLINE_S, read_timeout_s=60.0)
    h.origin.add("/slow", trickle(interval_s=0.02))
    started = time.monotonic()
    # WHEN fetched / THEN it ends at the file deadline with "deadline" in the reason
    error = h.fail("/slow")
    assert "deadline" in error.reason
    assert time.monotonic() - started < TINY_DEADLINE_S + 1.0


def test_a_stalled_body_read_times_out_and_is_retried(make):
    # GIVEN a read timeout of 0.2 s and a body that stalls once, then a good response
    h = make(read_timeout_s=0.2)
    h.origin.add("/f", sequence(stall_after_headers(len(BODY)), ok(BODY)))
    # WHEN fetched / THEN the stall costs one attempt and the retry succeeds
    result, data = h.fetch("/f")
    assert data == BODY and result.attempts == 2


def test_connection_refused_is_retryable(fault_origin):
    # GIVEN a loopback port with no listener (allow-listed so the guard lets us try)
    port = refused_port()
    clock = FakeClock()
    guard = AddressGuard(allow_hosts=[f"127.0.0.1:{port}"])
    with CurlFetcher(HttpSettings(max_attempts=3), clock=clock, guard=guard, rand=lambda: 0.5) as fetcher:
        # WHEN fetched
        with pytest.raises(RetryableFetchError, match="connection refused") as caught:
            fetcher.fetch(Source(f"http://127.0.0.1:{port}/f"), io.BytesIO())
    # THEN every attempt was tried, with backoff in between
    assert caught.value.attempts == 3 and len(clock.sleeps) == 2


# --- redirects -------------------------------------------------------------------------------------


def test_redirects_are_followed_within_one_attempt(h):
    # GIVEN a relative redirect to the file
    h.origin.add("/old", redirect("/new", code=301))
    h.origin.add("/new", ok(BODY))
    # WHEN the old URL is fetched / THEN the file arrives; the result keeps the URL we asked for
    result, data = h.fetch("/old")
    assert data == BODY
    assert result.url == h.origin.url("/old") and result.attempts == 1
    assert h.origin.requests("/old") == 1 and h.origin.requests("/new") == 1


def test_a_redirect_loop_fails_permanently_after_one_request(h):
    h.origin.add("/loop", redirect_loop())
    # GIVEN a URL redirecting to itself / THEN a permanent error, one request, no retry
    error = h.fail("/loop")
    assert isinstance(error, PermanentFetchError) and "redirect loop" in error.reason
    assert error.attempts == 1 and h.origin.requests("/loop") == 1


def test_more_redirects_than_allowed_fail_permanently(make):
    # GIVEN max_redirects=2 and a chain of three hops
    h = make(max_redirects=2)
    for i in range(3):
        h.origin.add(f"/r{i}", redirect(f"/r{i + 1}"))
    h.origin.add("/r3", ok(BODY))
    # WHEN fetched / THEN it stops after following two, never requesting the target
    error = h.fail("/r0")
    assert isinstance(error, PermanentFetchError) and "more than 2 redirects" in error.reason
    assert [h.origin.requests(f"/r{i}") for i in range(4)] == [1, 1, 1, 0]


def test_exactly_max_redirects_hops_succeed(make):
    h = make(max_redirects=2)
    for i in range(2):
        h.origin.add(f"/r{i}", redirect(f"/r{i + 1}"))
    h.origin.add("/r2", ok(BODY))
    # GIVEN a chain of exactly max_redirects hops / THEN the file arrives
    assert h.fetch("/r0")[1] == BODY


def test_redirect_to_a_non_http_scheme_is_refused(h):
    h.origin.add("/f", redirect("file:///etc/passwd"))
    error = h.fail("/f")
    # GIVEN a redirect to file:// / THEN permanent, never followed
    assert isinstance(error, PermanentFetchError) and "non-HTTP" in error.reason


# --- configuration and lifecycle --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout_s", 0),
        ("read_timeout_s", -1.0),
        ("file_deadline_s", 0),
        ("max_attempts", 0),
        ("backoff_base_s", -0.1),
        ("backoff_max_s", 0),
        ("max_file_bytes", 0),
        ("max_redirects", -1),
        ("pool_size", 0),
        ("chunk_bytes", 0),
        ("max_attempts", 2.5),
        ("user_agent", " "),
    ],
)
def test_settings_reject_bad_values_naming_the_field(field, value):
    # GIVEN one bad setting / THEN ValueError names it
    with pytest.raises(ValueError, match=field):
        HttpSettings(**{field: value})


def test_one_fetcher_serves_many_threads(make):
    # GIVEN a fetcher with a pool of 4 connections and 16 concurrent downloads
    h = make(pool_size=4)
    for i in range(16):
        h.origin.add(f"/f{i}", ok(BODY + str(i).encode()))

    def fetch(i: int) -> bytes:
        return h.fetch(f"/f{i}")[1]

    # WHEN they run on 8 threads / THEN every file arrives intact
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(fetch, range(16)))
    assert bodies == [BODY + str(i).encode() for i in range(16)]


def test_close_stops_the_engine_thread_and_refuses_later_fetches(fault_origin):
    # GIVEN a fetcher that has downloaded something (so its engine's I/O thread runs)
    fault_origin.add("/f", ok(BODY))
    fetcher = CurlFetcher(
        clock=FakeClock(), guard=AddressGuard(allow_hosts=[f"127.0.0.1:{fault_origin.port}"])
    )
    fetcher.fetch(Source(fault_origin.url("/f")), io.BytesIO())
    thread = fetcher.engine.thread
    assert thread is not None and thread.is_alive()
    # WHEN it is closed / THEN its own thread is gone (other fetchers' threads are not this test's business)
    fetcher.close()
    assert not thread.is_alive()
    # AND a later fetch is refused
    with pytest.raises(RuntimeError):
        fetcher.fetch(Source(fault_origin.url("/f")), io.BytesIO())

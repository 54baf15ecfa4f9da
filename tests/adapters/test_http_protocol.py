"""What libcurl now does for us, at the Fetcher port against raw-socket origins on 127.0.0.1: HTTP's
oddities (1xx before the answer, chunked beside Content-Length, raw UTF-8 in Location), a deterministic
protocol violation failing once instead of six times, and the low-speed guard ending a trickle.

Each test has one clock: a FakeClock for backoff, or (for the low-speed guard, which libcurl times)
nothing but the origin's real trickle, with a window of 1 s.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.models import Source
from fanfetch.errors import FetchError, PermanentFetchError, RetryableFetchError
from tests.fakes import FakeClock
from tests.origin_faults import FaultOrigin, ok

BODY = b"station,year\n" + b"".join(b"%d,%d\n" % (i, 1990 + i % 30) for i in range(300))


@dataclass(frozen=True)
class _Raw:
    """Sends ``payload`` as it is: the whole response, byte for byte."""

    payload: bytes

    def serve(self, ex) -> None:
        ex.send(self.payload)


@dataclass(frozen=True)
class _Drip:
    """Headers promising ``declared`` bytes, then one byte every ``interval_s`` (a trickle)."""

    interval_s: float
    declared: int = 1000

    def serve(self, ex) -> None:
        if not ex.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % self.declared):
            return
        for _ in range(self.declared):
            if not ex.send(b"x") or ex.hold(self.interval_s):
                return


@dataclass(frozen=True)
class _SlowHead:
    """The header block one line every ``interval_s`` (``stall_after``: that many lines, then silence), then BODY."""

    interval_s: float
    stall_after: int | None = None

    def serve(self, ex) -> None:
        lines = [b"HTTP/1.1 200 OK\r\n", *(b"X-Filler-%d: %d\r\n" % (i, i) for i in range(6)),
                 b"Content-Length: %d\r\n" % len(BODY), b"Connection: close\r\n", b"\r\n"]
        for sent, line in enumerate(lines):
            if sent == self.stall_after:
                ex.hold(30.0)
                return
            if not ex.send(line) or ex.hold(self.interval_s):
                return
        ex.send(BODY)


def _chunked(body: bytes, size: int = 1000) -> bytes:
    pieces = [body[i: i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _fetcher(origin: FaultOrigin, clock: FakeClock, **settings) -> CurlFetcher:
    options = {"max_attempts": 6, "backoff_base_s": 0.5} | settings
    return CurlFetcher(HttpSettings(**options), clock=clock,
                       guard=AddressGuard(allow_hosts=[f"127.0.0.1:{origin.port}"]), rand=lambda: 0.5)


@pytest.fixture
def fetcher(fault_origin, clock):
    with _fetcher(fault_origin, clock) as made:
        yield made


def _fetch(fetcher: CurlFetcher, url: str, **facts):
    dest = io.BytesIO()
    result = fetcher.fetch(Source(url, **facts), dest)
    return result, dest.getvalue()


def _fail(fetcher: CurlFetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        _fetch(fetcher, url)
    return caught.value


def test_interim_1xx_answers_before_the_final_one_are_skipped(fault_origin, fetcher):
    # GIVEN an origin that sends 100 Continue and 103 Early Hints before its 200
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(BODY)
    url = fault_origin.add("/f", _Raw(b"HTTP/1.1 100 Continue\r\n\r\n"
                                      b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                                      + head + BODY))
    # WHEN fetched / THEN the final answer's body is stored, after one request
    result, data = _fetch(fetcher, url)
    assert data == BODY and result.bytes == len(BODY) and result.attempts == 1


def test_chunked_wins_over_a_content_length_sent_beside_it(fault_origin, fetcher):
    # GIVEN a chunked body that also carries a (wrong) Content-Length
    url = fault_origin.add("/f", _Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n"
                                      b"Connection: close\r\n\r\n" + _chunked(BODY)))
    # WHEN fetched / THEN the chunked framing decides: the whole body, one request, no "short body"
    result, data = _fetch(fetcher, url)
    assert data == BODY and result.attempts == 1


def test_a_location_with_raw_utf8_is_followed_percent_encoded(fault_origin, fetcher):
    # GIVEN a redirect whose Location carries raw UTF-8 bytes (not percent-encoded, as RFC 3986 wants)
    fault_origin.add("/old", _Raw("HTTP/1.1 302 Found\r\nLocation: /café.csv\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n".encode()))
    fault_origin.add("/caf%C3%A9.csv", ok(BODY))
    # WHEN fetched / THEN the target is requested with the bytes percent-encoded, and the file arrives
    result, data = _fetch(fetcher, fault_origin.url("/old"))
    assert data == BODY and result.attempts == 1
    assert fault_origin.requests("/caf%C3%A9.csv") == 1


@pytest.mark.parametrize(
    "payload",
    [b"HTTP/1.1 abc Broken\r\nContent-Length: 2\r\n\r\nok", b"SPDY/9 200 OK\r\n\r\nok",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"],
    ids=["status-not-a-number", "not-http", "chunk-size-not-hex"],
)
def test_a_deterministic_protocol_violation_is_permanent_after_one_request(fault_origin, fetcher, clock, payload):
    # GIVEN an origin whose answer is not HTTP/1.1 it can ever be read as
    url = fault_origin.add("/f", _Raw(payload))
    # WHEN fetched / THEN it fails permanently after one request: no backoff, no six attempts
    error = _fail(fetcher, url)
    assert isinstance(error, PermanentFetchError) and "protocol violation" in error.reason
    assert error.attempts == 1 and fault_origin.requests("/f") == 1 and clock.sleeps == []


def test_a_trickle_below_the_low_speed_limit_fails_retryable_with_a_reason(fault_origin, clock):
    # GIVEN an origin trickling 1 byte every 0.5 s and a low-speed window of 1 s (default: 1024 B/s for 30 s)
    url = fault_origin.add("/slow", _Drip(interval_s=0.5))
    with _fetcher(fault_origin, clock, max_attempts=1, low_speed_bytes_per_s=1024, low_speed_time_s=1) as fetcher:
        started = time.monotonic()
        error = _fail(fetcher, url)
        elapsed = time.monotonic() - started
    # THEN the attempt ends retryable, saying it was too slow, about one window in (not at the 900 s deadline)
    assert isinstance(error, RetryableFetchError) and "too slow" in error.reason
    assert "below 1024 bytes/s for 1 s" in error.reason
    assert elapsed < 20  # the window is 1 s; the bound only says "not the file deadline", load or not


def test_the_default_low_speed_guard_is_1_kib_per_s_over_30_s():
    # GIVEN no setting / THEN a trickle is cut after 30 s below 1 KiB/s (README, docs/reliability.md)
    settings = HttpSettings()
    assert (settings.low_speed_bytes_per_s, settings.low_speed_time_s) == (1024, 30)


@pytest.mark.parametrize(("field", "value"), [("low_speed_bytes_per_s", -1), ("low_speed_time_s", 0),
                                              ("low_speed_time_s", 1.5)])
def test_low_speed_settings_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        HttpSettings(**{field: value})


def test_the_low_speed_guard_can_be_switched_off(fault_origin, clock):
    # GIVEN the guard off and a slow but finite body (20 bytes at 1 every 0.05 s: 20 B/s)
    url = fault_origin.add("/slow", _Drip(interval_s=0.05, declared=20))
    with _fetcher(fault_origin, clock, low_speed_bytes_per_s=0, low_speed_time_s=0) as fetcher:
        # WHEN fetched / THEN it completes
        result, data = _fetch(fetcher, url)
    assert data == b"x" * 20 and result.attempts == 1


def test_header_lines_arriving_one_by_one_within_the_read_timeout_are_no_silence(fault_origin, clock):
    # GIVEN a read timeout of 0.5 s and a header block sent one line every 0.1 s (~1 s in all): header lines reach
    # no Python callback, so the engine sees them by libcurl's header byte count
    url = fault_origin.add("/f", _SlowHead(interval_s=0.1))
    with _fetcher(fault_origin, clock, max_attempts=1, read_timeout_s=0.5) as fetcher:
        # WHEN fetched / THEN the file arrives: no read timeout while lines keep coming
        result, data = _fetch(fetcher, url)
    assert data == BODY and result.attempts == 1


def test_a_stall_in_the_middle_of_the_header_block_is_a_read_timeout(fault_origin, clock):
    # GIVEN an origin that sends two header lines, then nothing for 30 s, and a read timeout of 0.3 s
    url = fault_origin.add("/f", _SlowHead(interval_s=0.01, stall_after=2))
    with _fetcher(fault_origin, clock, max_attempts=1, read_timeout_s=0.3) as fetcher:
        started = time.monotonic()
        error = _fail(fetcher, url)
        elapsed = time.monotonic() - started
    # THEN the attempt ends retryable as a read timeout, long before the origin's 30 s
    assert isinstance(error, RetryableFetchError) and "read timeout" in error.reason
    assert elapsed < 20  # the bound only says "not the origin's stall", load or not

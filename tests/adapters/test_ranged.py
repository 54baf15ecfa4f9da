"""Large files over ranged connections: split, fetched in parallel, written at their offsets,
checked (length, validators, checksums), a failed part retried alone, and one stream whenever
ranges are not really on offer. Parts are small (4 KiB) so the loopback origin stays fast.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.ledger import Validator
from fanfetch.core.models import Source
from fanfetch.core.ranges import Part, parse_content_range, plan_parts
from fanfetch.errors import PermanentFetchError, RetryableFetchError
from tests.fakes import FakeClock
from tests.origin_faults import FaultOrigin, ok, ranged

PART = 4096
BODY = hashlib.shake_256(b"fanfetch-ranged").digest(10 * PART + 123)
SMALL = BODY[: 2 * PART - 1]  # under the ranged threshold
PARTS = plan_parts(len(BODY), part_bytes=PART, connections=4)  # what the fetcher below will ask for


def _fetcher(origin: FaultOrigin, clock: FakeClock, **settings) -> CurlFetcher:
    options = {
        "part_bytes": PART,
        "ranged_min_file_bytes": 2 * PART,
        "ranged_connections": 4,
        "max_attempts": 3,
        "backoff_base_s": 0.5,
    } | settings
    return CurlFetcher(
        HttpSettings(**options),
        clock=clock,
        guard=AddressGuard(allow_hosts=[f"127.0.0.1:{origin.port}"]),
        rand=lambda: 0.5,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class _ThroughAsync:
    """The fetcher driven through ``fetch_async`` (no waiting thread per file): the same outcomes as ``fetch``."""

    def __init__(self, fetcher: CurlFetcher):
        self._fetcher = fetcher

    def fetch(self, source, dest, **options):
        return self._fetcher.fetch_async(source, dest, **options).result(timeout=60)

    def __getattr__(self, name):
        return getattr(self._fetcher, name)


@pytest.fixture(params=["fetch", "fetch_async"])
def fetcher(fault_origin, clock, request):
    with _fetcher(fault_origin, clock) as made:
        yield made if request.param == "fetch" else _ThroughAsync(made)


def _ranges_asked(origin: FaultOrigin, path: str) -> list[str]:
    return [r.headers.get("range", "") for r in origin.log(path)]


# --- pure planning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "connections", "expected_parts", "expected_length"),
    [
        (256 * 2**20, 8, 16, 16 * 2**20),  # the bench file at N = 8: two equal rounds
        (256 * 2**20, 16, 16, 16 * 2**20),  # N = 16: one round
        (40 * 2**20, 8, 5, 8 * 2**20),  # never below half a part: fewer, bigger parts
        (100 * 2**20, 8, 8, 12.5 * 2**20),  # a multiple of the connections, within 8..16 MiB
    ],
)
def test_parts_cover_the_file_in_even_rounds(size, connections, expected_parts, expected_length):
    # WHEN a file is planned for N connections with 16 MiB parts
    parts = plan_parts(size, part_bytes=16 * 2**20, connections=connections)
    # THEN the parts tile the file exactly, in order, all of one length but the last
    assert len(parts) == expected_parts
    assert parts[0].start == 0 and parts[-1].stop == size
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert parts[0].length == pytest.approx(expected_length, abs=1)
    assert all(8 * 2**20 <= p.length <= 16 * 2**20 for p in parts[:-1])


@pytest.mark.parametrize(
    ("size", "connections", "expected_parts", "expected_length"),
    [
        (256 * 2**20, 16, 32, 8 * 2**20),  # N = 16: two rounds of half parts instead of one round
        (256 * 2**20, 8, 16, 16 * 2**20),  # already two rounds: unchanged
        (200 * 2**20, 16, 16, 12.5 * 2**20),  # two rounds would need parts below 8 MiB: one round
    ],
)
def test_a_hashed_file_gets_two_rounds_while_parts_stay_at_least_half_size(size, connections, expected_parts,
                                                                          expected_length):
    # WHEN a file is planned for at least two rounds (the fetcher's plan: the first round is hashed meanwhile)
    parts = plan_parts(size, part_bytes=16 * 2**20, connections=connections, min_rounds=2)
    # THEN it tiles the file in parts of 8..16 MiB, a multiple of the connections
    assert len(parts) == expected_parts
    assert parts[0].start == 0 and parts[-1].stop == size
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert parts[0].length == pytest.approx(expected_length, abs=1)
    assert all(8 * 2**20 <= p.length <= 16 * 2**20 for p in parts[:-1])


def test_content_range_is_read_strictly():
    assert parse_content_range("bytes 0-99/1000") == (0, 100, 1000)
    assert parse_content_range("bytes 10-19/*") == (10, 20, None)
    for bad in (None, "", "bytes */1000", "items 0-9/10", "bytes 9-0/10", "bytes 0-99/50", "bytes ０-1/9"):
        assert parse_content_range(bad) is None
    assert Part(0, 10, 20).header == "bytes=10-19"


# --- ranged downloads ---------------------------------------------------------------------------


def test_a_large_file_is_fetched_in_parallel_parts_and_assembled_exactly(fault_origin, fetcher):
    # GIVEN an origin that accepts ranges, and answers parts only when 4 are asked for together
    behaviour = ranged(BODY, parts_meet=4)
    url = fault_origin.add("/big", behaviour)
    # WHEN it is fetched into a real file, with its checksums known
    with tempfile.TemporaryFile() as dest:
        result = fetcher.fetch(
            Source(url, sha256=hashlib.sha256(BODY).hexdigest(), md5=hashlib.md5(BODY).hexdigest(), size=len(BODY)),
            dest,
        )
        dest.seek(0)
        data = dest.read()
    # THEN the file is whole and checked, and its validators are reported
    assert data == BODY and result.bytes == len(BODY)
    assert (result.etag, result.last_modified) == ('"v1"', "Wed, 21 Oct 2015 07:28:00 GMT")
    # AND one probe (no Range) served part 0, then every other part was asked for exactly once
    asked = _ranges_asked(fault_origin, "/big")
    assert asked[0] == "" and sorted(asked[1:]) == sorted(p.header for p in PARTS[1:])
    assert result.attempts == len(PARTS)
    # AND parts ran 4 at a time (ranged_connections), never more
    assert behaviour.max_parts_together == 4


def test_a_file_object_without_a_descriptor_is_written_at_offsets_too(fault_origin, fetcher):
    # GIVEN an in-memory destination (no fileno)
    url = fault_origin.add("/big", ranged(BODY))
    dest = io.BytesIO(b"stale bytes from an earlier attempt")
    # WHEN fetched with a checksum / THEN it holds exactly the body, read back for the check
    result = fetcher.fetch(Source(url, sha256=hashlib.sha256(BODY).hexdigest()), dest)
    assert dest.getvalue() == BODY and result.bytes == len(BODY)
    assert len(fault_origin.log("/big")) > 1


def test_a_small_file_is_one_plain_request(fault_origin, fetcher):
    # GIVEN a file below the ranged threshold
    url = fault_origin.add("/small", ranged(SMALL))
    # WHEN fetched / THEN one request without Range brings it whole
    dest = io.BytesIO()
    fetcher.fetch(Source(url), dest)
    assert dest.getvalue() == SMALL and _ranges_asked(fault_origin, "/small") == [""]


def test_an_origin_without_accept_ranges_is_one_stream(fault_origin, fetcher):
    # GIVEN a large file served without Accept-Ranges
    url = fault_origin.add("/plain", ok(BODY))
    # WHEN fetched / THEN one request, no Range asked
    dest = io.BytesIO()
    fetcher.fetch(Source(url), dest)
    assert dest.getvalue() == BODY and _ranges_asked(fault_origin, "/plain") == [""]


def test_a_failed_part_is_retried_alone(fault_origin, fetcher, clock):
    # GIVEN an origin that cuts part 3 short, twice
    flaky = PARTS[3]
    url = fault_origin.add("/big", ranged(BODY, cut_part_times={flaky.start: 2}))
    dest = io.BytesIO()
    # WHEN fetched
    result = fetcher.fetch(Source(url), dest)
    # THEN the file is whole; only that part was asked for again (3 times), with backoff
    assert dest.getvalue() == BODY
    asked = _ranges_asked(fault_origin, "/big")
    assert asked.count(flaky.header) == 3
    assert asked.count("") == 1  # no whole-file restart
    assert all(asked.count(h) == 1 for h in set(asked) - {"", flaky.header})
    assert clock.sleeps == [0.25, 0.5] and result.attempts == len(asked)


def test_a_part_failing_every_attempt_fails_the_file_as_retryable(fault_origin, fetcher):
    # GIVEN a part that is always cut short
    url = fault_origin.add("/big", ranged(BODY, cut_part_times={PARTS[5].start: 99}))
    # WHEN fetched / THEN retryable, after max_attempts tries of that part
    with pytest.raises(RetryableFetchError):
        fetcher.fetch(Source(url), io.BytesIO())
    assert _ranges_asked(fault_origin, "/big").count(PARTS[5].header) == 3


def test_a_file_changing_between_probe_and_parts_is_restarted_once(fault_origin, fetcher):
    # GIVEN a file that changes right after the first probe (parts carry ETag v2), then stays
    url = fault_origin.add("/big", ranged(BODY, etags=('"v1"', '"v2"')))
    dest = io.BytesIO()
    # WHEN fetched
    result = fetcher.fetch(Source(url), dest)
    # THEN the whole file was restarted once and is reported with the new validator
    assert dest.getvalue() == BODY and result.etag == '"v2"'
    assert _ranges_asked(fault_origin, "/big").count("") == 2


def test_a_file_that_keeps_changing_fails_retryable_after_one_restart(fault_origin, fetcher):
    # GIVEN a file whose ETag changes on every probe
    url = fault_origin.add("/big", ranged(BODY, etags=('"v1"', '"v2"', '"v3"')))
    # WHEN fetched / THEN retryable ("changed during download"), after exactly two probes
    with pytest.raises(RetryableFetchError) as caught:
        fetcher.fetch(Source(url), io.BytesIO())
    assert "changed" in caught.value.reason
    assert _ranges_asked(fault_origin, "/big").count("") == 2


def test_an_origin_that_ignores_range_falls_back_to_one_stream(fault_origin, fetcher):
    # GIVEN an origin advertising Accept-Ranges but answering 200 with the whole file to Range
    url = fault_origin.add("/liar", ranged(BODY, range_support="ignored"))
    dest = io.BytesIO()
    # WHEN fetched
    fetcher.fetch(Source(url), dest)
    # THEN the bytes are right (never duplicated), and the last request was a plain one
    assert dest.getvalue() == BODY
    assert _ranges_asked(fault_origin, "/liar")[-1] == ""


def test_a_stalled_part_is_cut_at_the_file_deadline(fault_origin, clock):
    # GIVEN a part that stalls after its headers, and a file deadline of 0.3 s (real, watchdog)
    url = fault_origin.add("/big", ranged(BODY, stall_part_at=PARTS[2].start))
    with _fetcher(fault_origin, clock, file_deadline_s=0.3) as fetcher:
        started = time.monotonic()
        # WHEN fetched / THEN retryable "deadline exceeded", promptly, not after the read timeout
        with pytest.raises(RetryableFetchError) as caught:
            fetcher.fetch(Source(url), io.BytesIO())
    assert "deadline" in caught.value.reason
    assert time.monotonic() - started < 3


def test_a_checksum_mismatch_over_the_assembled_file_is_caught(fault_origin, fetcher):
    url = fault_origin.add("/big", ranged(BODY))
    # GIVEN a manifest sha256 that does not match / WHEN fetched / THEN retryable, naming it
    with pytest.raises(RetryableFetchError) as caught:
        fetcher.fetch(Source(url, sha256="0" * 64), io.BytesIO())
    assert "checksum mismatch" in caught.value.reason


def test_the_size_limit_applies_before_any_part_is_fetched(fault_origin, clock):
    # GIVEN a limit below the file's Content-Length
    url = fault_origin.add("/big", ranged(BODY))
    with _fetcher(fault_origin, clock, max_file_bytes=len(BODY) - 1) as fetcher:
        # WHEN fetched / THEN permanent, after the probe alone
        with pytest.raises(PermanentFetchError):
            fetcher.fetch(Source(url), io.BytesIO())
    assert len(fault_origin.log("/big")) == 1


def test_ranged_probe_is_conditional_and_a_304_fetches_no_part(fault_origin, fetcher):
    # GIVEN last run's validators, still current at the origin
    url = fault_origin.add("/big", ranged(BODY))
    dest = io.BytesIO(b"previous")
    # WHEN fetched with them
    result = fetcher.fetch(Source(url), dest, validator=Validator(url, etag='"v1"'))
    # THEN one conditional request, not modified, nothing written
    assert result.not_modified and result.bytes == 0 and dest.getvalue() == b"previous"
    assert [r.headers.get("if-none-match") for r in fault_origin.log("/big")] == ['"v1"']


def test_one_connection_per_file_turns_ranges_off(fault_origin, clock):
    url = fault_origin.add("/big", ranged(BODY))
    # GIVEN ranged_connections=1 / WHEN fetched / THEN one plain request
    with _fetcher(fault_origin, clock, ranged_connections=1) as fetcher:
        dest = io.BytesIO()
        fetcher.fetch(Source(url), dest)
    assert dest.getvalue() == BODY and _ranges_asked(fault_origin, "/big") == [""]


def test_connections_per_file_default_to_the_pool_up_to_16():
    assert HttpSettings(pool_size=8).connections_per_file == 8
    assert HttpSettings(pool_size=64).connections_per_file == 16
    assert HttpSettings(pool_size=64, ranged_connections=4).connections_per_file == 4

"""``fetch(..., digest=True)``: the sha256 of exactly the bytes left in ``dest``, computed while they
arrive (one stream as it is written; ranged parts by a thread following the contiguous prefix),
whatever retries, part retries and restarts happened on the way. Parts are 4 KiB, as in test_ranged.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading

import pytest

from fanfetch.adapters import offset_sink
from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.ledger import Validator
from fanfetch.core.models import Source
from fanfetch.core.ranges import plan_parts
from fanfetch.errors import RetryableFetchError
from tests.fakes import FakeClock
from tests.origin_faults import FaultOrigin, ok, ranged, reset_mid_body, sequence

PART = 4096
BODY = hashlib.shake_256(b"fanfetch-digest").digest(10 * PART + 123)
OTHER = hashlib.shake_256(b"another version").digest(len(BODY))  # same length, other bytes
SMALL = bytes(range(256)) * 8
PARTS = plan_parts(len(BODY), part_bytes=PART, connections=4)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fetcher(fault_origin: FaultOrigin):
    settings = HttpSettings(part_bytes=PART, ranged_min_file_bytes=2 * PART, ranged_connections=4,
                            max_attempts=3, backoff_base_s=0.5)
    with CurlFetcher(settings, clock=FakeClock(), guard=AddressGuard(allow_hosts=[f"127.0.0.1:{fault_origin.port}"]),
                     rand=lambda: 0.5) as made:
        yield made


def _digest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fanfetch-digest"]


# --- one stream ---------------------------------------------------------------------------------


def test_a_streamed_file_comes_with_the_sha256_of_its_bytes(fault_origin, fetcher):
    # GIVEN a small file (one stream)
    url = fault_origin.add("/f", ok(SMALL))
    dest = io.BytesIO()
    # WHEN fetched with a digest / THEN the sha256 is that of the bytes in dest
    result = fetcher.fetch(Source(url), dest, digest=True)
    assert dest.getvalue() == SMALL and result.sha256 == _sha(SMALL)


def test_without_digest_no_sha256_is_reported(fault_origin, fetcher):
    url = fault_origin.add("/f", ok(SMALL))
    # GIVEN no digest asked / WHEN fetched / THEN sha256 is None (nothing hashed for nothing)
    assert fetcher.fetch(Source(url), io.BytesIO()).sha256 is None


def test_a_retried_stream_reports_the_digest_of_the_final_attempt_only(fault_origin, fetcher):
    # GIVEN an origin that cuts a first, different body after 100 bytes, then serves the file
    url = fault_origin.add("/f", sequence(reset_mid_body(OTHER[:2048], after_bytes=100), ok(SMALL)))
    dest = io.BytesIO()
    # WHEN fetched with a digest
    result = fetcher.fetch(Source(url), dest, digest=True)
    # THEN two attempts, and the digest covers only what dest holds: the second body
    assert result.attempts == 2
    assert dest.getvalue() == SMALL and result.sha256 == _sha(SMALL)


def test_a_not_modified_answer_has_no_digest(fault_origin, fetcher):
    # GIVEN validators still current at the origin
    url = fault_origin.add("/big", ranged(BODY))
    # WHEN fetched conditionally with a digest / THEN 304: nothing written, no sha256
    result = fetcher.fetch(Source(url), io.BytesIO(), validator=Validator(url, etag='"v1"'), digest=True)
    assert result.not_modified and result.sha256 is None


# --- ranged -------------------------------------------------------------------------------------


def test_a_ranged_file_with_parts_finishing_out_of_order_has_the_right_digest(fault_origin, fetcher):
    # GIVEN parts answered 4 at a time, and part 1 cut halfway once (it is retried, and lands after later ones)
    url = fault_origin.add("/big", ranged(BODY, parts_meet=4, cut_part_times={PARTS[1].start: 1}))
    with tempfile.TemporaryFile() as dest:
        # WHEN fetched into a real file with a digest
        result = fetcher.fetch(Source(url), dest, digest=True)
        dest.seek(0)
        data = dest.read()
    # THEN the digest is that of the assembled file, and part 1 was asked for twice
    assert data == BODY and result.sha256 == _sha(BODY)
    assert [r.headers.get("range") for r in fault_origin.log("/big")].count(PARTS[1].header) == 2
    # AND the hasher thread did not outlive the fetch
    assert _digest_threads() == []


def test_a_ranged_restart_after_a_change_hashes_only_the_new_version(fault_origin, fetcher):
    # GIVEN a file that is OTHER (ETag v1) for the probe, then BODY (ETag v2) for the parts and after
    url = fault_origin.add("/big", sequence(ranged(OTHER, etag='"v1"'), ranged(BODY, etag='"v2"')))
    dest = io.BytesIO()
    # WHEN fetched with a digest
    result = fetcher.fetch(Source(url), dest, digest=True)
    # THEN the download restarted, and the digest is that of the new version only
    assert result.etag == '"v2"' and dest.getvalue() == BODY
    assert result.sha256 == _sha(BODY)


def test_manifest_checksums_are_verified_on_the_same_single_pass(fault_origin, fetcher, monkeypatch):
    # GIVEN a ranged file whose manifest gives sha256 and md5, and a count of bytes read back from dest
    url = fault_origin.add("/big", ranged(BODY))
    read = [0]
    real_read_at = offset_sink.OffsetSink.read_at

    def counting_read_at(self, offset, size):
        data = real_read_at(self, offset, size)
        read[0] += len(data)
        return data

    monkeypatch.setattr(offset_sink.OffsetSink, "read_at", counting_read_at)
    source = Source(url, sha256=_sha(BODY), md5=hashlib.md5(BODY).hexdigest(), size=len(BODY))
    with tempfile.TemporaryFile() as dest:
        # WHEN fetched with a digest too
        result = fetcher.fetch(source, dest, digest=True)
    # THEN both checks passed and the digest is reported, with the file read back exactly once
    assert result.sha256 == _sha(BODY)
    assert read[0] == len(BODY)


def test_a_ranged_checksum_mismatch_still_fails_and_leaves_no_hasher_behind(fault_origin, fetcher):
    # GIVEN a manifest sha256 that does not match
    url = fault_origin.add("/big", ranged(BODY))
    # WHEN fetched with a digest / THEN retryable checksum mismatch, and no hasher thread remains
    with pytest.raises(RetryableFetchError) as caught:
        fetcher.fetch(Source(url, sha256="0" * 64), io.BytesIO(), digest=True)
    assert "checksum mismatch" in caught.value.reason
    assert _digest_threads() == []


def test_a_failed_ranged_download_leaves_no_hasher_behind(fault_origin, fetcher):
    # GIVEN a part that is always cut short
    url = fault_origin.add("/big", ranged(BODY, cut_part_times={PARTS[5].start: 99}))
    # WHEN fetched with a digest / THEN retryable, and the hasher thread was stopped with the fetch
    with pytest.raises(RetryableFetchError):
        fetcher.fetch(Source(url), io.BytesIO(), digest=True)
    assert _digest_threads() == []

"""Content as the origin meant it, at the Fetcher port against real faulty origins on 127.0.0.1:
every Content-Encoding we advertise is decoded, others fail with a reason, a compressed stream cut
short is retried and never stored as complete, and a published ``.gz`` file is kept as published.

The ``fetcher`` fixture builds the engine under test; any Fetcher engine must pass these as they are.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.adapters.local_store import LocalStore
from fanfetch.app.services import GroupContext, process_group
from fanfetch.core.encoding import ACCEPT_ENCODING
from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.errors import FetchError, PermanentFetchError, RetryableFetchError
from tests.fakes import FakeClock
from tests.origin_faults import close_delimited_cut, ok, sequence

CSV = b"date,temp\n" + b"".join(b"2020-01-%02d,%d\n" % (d % 28 + 1, d) for d in range(4000))


@pytest.fixture
def fetcher(fault_origin):
    engine = CurlFetcher(
        HttpSettings(max_attempts=3, backoff_base_s=0.01),
        clock=FakeClock(),
        guard=AddressGuard(allow_hosts=[f"127.0.0.1:{fault_origin.port}"]),
    )
    yield engine
    engine.close()


def _fetch(fetcher, url: str, **facts):
    dest = io.BytesIO()
    result = fetcher.fetch(Source(url, **facts), dest)
    return result, dest.getvalue()


def _fail(fetcher, url: str, **facts) -> FetchError:
    with pytest.raises(FetchError) as caught:
        _fetch(fetcher, url, **facts)
    return caught.value


@pytest.mark.parametrize(
    ("coding", "encode"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress),
     ("deflate", lambda b: zlib.compress(b)[2:-4]), ("gzip, deflate", lambda b: zlib.compress(gzip.compress(b)))],
    ids=["gzip", "x-gzip", "deflate", "raw-deflate", "gzip-then-deflate"],
)
def test_every_coding_we_advertise_is_decoded(fault_origin, fetcher, coding, encode):
    # GIVEN an origin compressing a CSV on the fly with a coding we advertise
    url = fault_origin.add("/2020.csv", ok(encode(CSV), {"Content-Encoding": coding, "Content-Type": "text/csv"}))
    # WHEN fetched
    result, data = _fetch(fetcher, url, sha256=hashlib.sha256(CSV).hexdigest(), size=len(CSV))
    # THEN the decoded bytes are stored, checked against the manifest, with the Content-Type reported
    assert data == CSV and result.bytes == len(CSV) and result.attempts == 1
    assert result.content_type == "text/csv"
    # AND the request advertised exactly the codings we decode
    assert fault_origin.log("/2020.csv")[0].headers["accept-encoding"] == ACCEPT_ENCODING


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, br"])
def test_a_coding_we_cannot_decode_fails_permanently_naming_it(fault_origin, fetcher, coding):
    # GIVEN an origin that answers with a coding we never advertised
    url = fault_origin.add("/a.csv", ok(b"\x28\xb5\x2f\xfd compressed bytes", {"Content-Encoding": coding}))
    # WHEN fetched / THEN it fails permanently after one request, the reason naming the coding
    error = _fail(fetcher, url)
    assert isinstance(error, PermanentFetchError) and coding.split(", ")[-1] in error.reason
    assert "not supported" in error.reason and fault_origin.requests("/a.csv") == 1


def test_a_close_delimited_gzip_body_cut_in_half_is_retried_then_stored_whole(fault_origin, fetcher):
    # GIVEN a gzip body without Content-Length whose connection closes half-way once, then whole
    raw = gzip.compress(CSV)
    headers = {"Content-Encoding": "gzip"}
    url = fault_origin.add("/c.csv", sequence(close_delimited_cut(raw, len(raw) // 2, headers),
                                              close_delimited_cut(raw, len(raw), headers)))
    # WHEN fetched without any size or checksum in the manifest
    result, data = _fetch(fetcher, url)
    # THEN the cut copy was recognised (retried) and the whole file stored
    assert data == CSV and result.attempts == 2


def test_a_gzip_body_always_cut_short_fails_retryable_never_complete(fault_origin, fetcher):
    raw = gzip.compress(CSV)
    url = fault_origin.add("/c.csv", close_delimited_cut(raw, len(raw) // 2, {"Content-Encoding": "gzip"}))
    error = _fail(fetcher, url)
    assert isinstance(error, RetryableFetchError) and "cut short" in error.reason
    assert error.attempts == 3 and fault_origin.requests("/c.csv") == 3


def test_a_body_that_is_not_gzip_though_declared_so_fails_permanently(fault_origin, fetcher):
    url = fault_origin.add("/h", ok(b"<html>error</html>", {"Content-Encoding": "gzip"}))
    error = _fail(fetcher, url)
    assert isinstance(error, PermanentFetchError) and "could not decode" in error.reason


def test_a_published_gz_file_served_with_content_encoding_gzip_is_stored_as_published(fault_origin, fetcher):
    # GIVEN a .csv.gz whose server adds Content-Encoding: gzip, and a manifest sha256 of the published file
    published = gzip.compress(CSV)
    url = fault_origin.add("/2020.csv.gz", ok(published, {"Content-Encoding": "gzip"}))
    # WHEN fetched
    result, data = _fetch(fetcher, url, sha256=hashlib.sha256(published).hexdigest(), size=len(published))
    # THEN the .gz bytes are stored (what curl and wget keep) and the manifest's checks pass on them
    assert data == published and result.bytes == len(published) and result.attempts == 1


def test_a_br_part_fails_a_csv_group_instead_of_being_appended(fault_origin, fetcher, tmp_path):
    # GIVEN a csv group whose second year comes back brotli-encoded
    first = fault_origin.add("/2019.csv", ok(b"d,t\n2019,1\n"))
    second = fault_origin.add("/2020.csv", ok(b"\x1b\x0b\x00binary", {"Content-Encoding": "br"}))
    group = Group("s1", (Source(first), Source(second)), "stations/s1.csv", MergeMode.CSV)
    store = LocalStore(tmp_path)
    # WHEN the group is processed
    with ThreadPoolExecutor(2) as pool:
        result = process_group(group, GroupContext(fetcher=fetcher, store=store, files=pool, clock=FakeClock()))
    # THEN it fails permanently naming the URL and the coding, and nothing is stored
    assert not result.ok and not result.retryable
    assert second in (result.error or "") and "br" in (result.error or "")
    assert not (tmp_path / "stations" / "s1.csv").exists()

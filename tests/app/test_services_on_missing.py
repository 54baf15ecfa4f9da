"""on_missing=skip through process_group with the real HTTP fetcher against an origin on 127.0.0.1:
404/410 files are left out and named, the group is stored from the rest; 5xx, network failures and a
group whose every file is missing still fail; the default (fail) is unchanged."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.adapters.local_store import LocalStore
from fanfetch.app.group_output import done_marker_key
from fanfetch.app.services import GroupContext, process_group
from fanfetch.core.models import Group, MergeMode, OnMissing, Source
from tests.fakes import FakeClock
from tests.origin_faults import ok, refused_port, status


@pytest.fixture
def dead_port():
    return refused_port()  # nothing listens there: connection refused


@pytest.fixture
def run(fault_origin, tmp_path, dead_port):
    allowed = [f"127.0.0.1:{fault_origin.port}", f"127.0.0.1:{dead_port}"]
    fetcher = CurlFetcher(HttpSettings(max_attempts=2, backoff_base_s=0.01), clock=FakeClock(),
                          guard=AddressGuard(allow_hosts=allowed))
    store = LocalStore(str(tmp_path / "out"))
    pool = ThreadPoolExecutor(4)

    def process(group: Group):
        return process_group(group, GroupContext(fetcher=fetcher, store=store, files=pool, clock=FakeClock()))

    yield process, tmp_path / "out"
    pool.shutdown()
    fetcher.close()


def _group(urls, *, on_missing=OnMissing.SKIP, merge=MergeMode.CSV, key="st/1.csv") -> Group:
    return Group("1", tuple(Source(u) for u in urls), key, merge, on_missing=on_missing)


def test_a_404_year_is_left_out_the_rest_is_stored_and_the_missing_url_is_named(fault_origin, run):
    # GIVEN three yearly CSVs of which the middle one is gone (404), with on_missing=skip
    process, out = run
    y1 = fault_origin.add("/2001.csv", ok(b"d,t\n2001,1\n"))
    y2 = fault_origin.add("/2002.csv", status(404))
    y3 = fault_origin.add("/2003.csv", ok(b"d,t\n2003,3\n"))
    # WHEN the group is processed
    result = process(_group([y1, y2, y3]))
    # THEN it is stored from the two that exist, reported ok, and names the missing URL
    assert result.ok and result.missing == (y2,)
    assert (out / "st/1.csv").read_bytes() == b"d,t\n2001,1\n2003,3\n"
    assert result.to_record()["missing"] == [y2] and result.files == 2
    assert fault_origin.requests("/2002.csv") == 1  # a 404 is not retried


def test_410_counts_as_missing_too_and_none_groups_store_only_what_exists(fault_origin, run):
    process, out = run
    a = fault_origin.add("/f/a.bin", ok(b"A"))
    gone = fault_origin.add("/f/b.bin", status(410))
    result = process(_group([a, gone], merge=MergeMode.NONE, key="files/"))
    assert result.ok and result.missing == (gone,)
    assert (out / "files/a.bin").read_bytes() == b"A" and not (out / "files/b.bin").exists()
    index = json.loads((out / done_marker_key(_group([a], merge=MergeMode.NONE, key="files/"))).read_text())
    assert [f["url"] for f in index["files"]] == [a]


@pytest.mark.parametrize("fault", ["503", "refused"])
def test_5xx_and_network_failures_still_fail_with_skip(fault_origin, run, fault, dead_port):
    process, out = run
    good = fault_origin.add("/2001.csv", ok(b"d,t\n2001,1\n"))
    bad = fault_origin.add("/2002.csv", status(503)) if fault == "503" else f"http://127.0.0.1:{dead_port}/x"
    result = process(_group([good, bad]))
    assert not result.ok and result.retryable and result.missing == ()
    assert not (out / "st/1.csv").exists()


def test_a_group_whose_every_file_is_missing_fails_permanently_naming_them(fault_origin, run):
    process, out = run
    urls = [fault_origin.add(f"/{y}.csv", status(404)) for y in (2001, 2002)]
    result = process(_group(urls))
    assert not result.ok and not result.retryable
    assert "every file of the group is missing" in (result.error or "") and urls[1] in (result.error or "")
    assert not (out / "st/1.csv").exists()


@pytest.mark.parametrize("policy", [OnMissing.FAIL, None])
def test_without_skip_a_404_still_fails_the_group(fault_origin, run, policy):
    process, out = run
    good = fault_origin.add("/2001.csv", ok(b"d,t\n2001,1\n"))
    gone = fault_origin.add("/2002.csv", status(404))
    result = process(_group([good, gone], on_missing=policy))
    assert not result.ok and "404" in (result.error or "") and not (out / "st/1.csv").exists()

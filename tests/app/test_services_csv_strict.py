"""csv merge is strict by default (process_group with the real HTTP fetcher against 127.0.0.1): a part
served as text/html or whose header differs fails the group naming the URL, nothing stored; the
documented opt-out ``csv-lenient`` keeps the old behaviour."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.adapters.local_store import LocalStore
from fanfetch.app.services import GroupContext, process_group
from fanfetch.core.models import Group, MergeMode, Source
from tests.fakes import FakeClock
from tests.origin_faults import ok

CSV = {"Content-Type": "text/csv"}
HTML = b"<!doctype html><html><body>Service temporarily unavailable</body></html>\n"


@pytest.fixture
def run(fault_origin, tmp_path):
    fetcher = CurlFetcher(HttpSettings(max_attempts=2, backoff_base_s=0.01), clock=FakeClock(),
                          guard=AddressGuard(allow_hosts=[f"127.0.0.1:{fault_origin.port}"]))
    store = LocalStore(str(tmp_path / "out"))
    pool = ThreadPoolExecutor(4)

    def process(urls, merge=MergeMode.CSV):
        group = Group("1", tuple(Source(u) for u in urls), "st/1.csv", merge)
        return process_group(group, GroupContext(fetcher=fetcher, store=store, files=pool, clock=FakeClock()))

    yield process, tmp_path / "out"
    pool.shutdown()
    fetcher.close()


def test_a_200_html_error_page_fails_the_group_naming_its_url(fault_origin, run):
    # GIVEN two years, the second answered 200 with an HTML error page
    process, out = run
    a = fault_origin.add("/2020.csv", ok(b"date,temp\n2020,1\n", CSV))
    b = fault_origin.add("/2021.csv", ok(HTML, {"Content-Type": "text/html; charset=utf-8"}))
    # WHEN the csv group is processed
    result = process([a, b])
    # THEN it fails (retryable: such pages are usually transient), naming the URL; nothing is stored
    assert not result.ok and result.retryable
    assert b in (result.error or "") and "text/html" in (result.error or "")
    assert not (out / "st/1.csv").exists()


def test_a_year_whose_header_gained_a_column_fails_permanently_naming_its_url(fault_origin, run):
    process, out = run
    a = fault_origin.add("/2020.csv", ok(b"\xef\xbb\xbfdate,temp\r\n2020,1\r\n", CSV))
    b = fault_origin.add("/2021.csv", ok(b"date,temp\n2021,2\n", CSV))
    c = fault_origin.add("/2022.csv", ok(b"date,temp,wind\n2022,3,4\n", CSV))
    result = process([a, b, c])
    assert not result.ok and not result.retryable
    assert c in (result.error or "") and "'date,temp,wind'" in (result.error or "")
    assert not (out / "st/1.csv").exists() and not list((out / ".fanfetch-tmp").glob("*"))


def test_csv_lenient_keeps_todays_behaviour(fault_origin, run):
    process, out = run
    a = fault_origin.add("/2020.csv", ok(b"date,temp\n2020,1\n", CSV))
    b = fault_origin.add("/2021.csv", ok(HTML, {"Content-Type": "text/html"}))
    c = fault_origin.add("/2022.csv", ok(b"date,temp,wind\n2022,3,4\n", CSV))
    result = process([a, b, c], MergeMode.CSV_LENIENT)
    assert result.ok
    assert (out / "st/1.csv").read_bytes() == b"date,temp\n2020,1\n" + HTML + b"date,temp,wind\n2022,3,4\n"

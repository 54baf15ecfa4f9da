"""process_group over a fetcher with ``fetch_async`` (the libcurl one, origin on 127.0.0.1): no thread per
file, and the same fail-fast as the threaded path: after a file fails, files not yet started are never
requested, and the group fails with the most telling error and the requests it made."""

from __future__ import annotations

import gc
import weakref
from concurrent.futures import ThreadPoolExecutor

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.adapters.local_store import LocalStore
from fanfetch.app.services import GroupContext, process_group
from fanfetch.core.models import Group, MergeMode, Source
from tests.fakes import FakeClock
from tests.origin_faults import ok, status


def _context(fault_origin, tmp_path, **settings):
    fetcher = CurlFetcher(HttpSettings(**settings), clock=FakeClock(),
                          guard=AddressGuard(allow_hosts=[f"127.0.0.1:{fault_origin.port}"]))
    files = ThreadPoolExecutor(1)  # never used: fetch_async needs no thread per file
    return fetcher, files, GroupContext(fetcher=fetcher, store=LocalStore(str(tmp_path / "out")), files=files,
                                        clock=FakeClock())


def test_a_group_of_many_files_is_merged_in_order_without_a_file_thread(fault_origin, tmp_path):
    # GIVEN a group of 40 small CSVs and a fetcher of 8 connections
    fetcher, files, ctx = _context(fault_origin, tmp_path, pool_size=8)
    urls = [fault_origin.add(f"/{i}.csv", ok(f"n\n{i}\n".encode())) for i in range(40)]
    try:
        # WHEN the group is processed
        result = process_group(Group("g", tuple(Source(u) for u in urls), "g.csv", MergeMode.CSV), ctx)
    finally:
        fetcher.close()
        files.shutdown()
    # THEN it is stored whole, in manifest order, one request per file, and the file pool stayed idle
    assert result.ok and result.attempts == 40
    assert (tmp_path / "out/g.csv").read_text() == "n\n" + "".join(f"{i}\n" for i in range(40))
    assert files._threads == set()  # noqa: SLF001 - no file thread was ever started


def test_after_a_permanent_failure_files_not_yet_started_are_never_requested(fault_origin, tmp_path):
    # GIVEN one connection and a group whose first file is gone (404), then 5 good files
    fetcher, files, ctx = _context(fault_origin, tmp_path, pool_size=1, max_attempts=2)
    gone = fault_origin.add("/gone.csv", status(404))
    good = [fault_origin.add(f"/{i}.csv", ok(b"n\n1\n")) for i in range(5)]
    try:
        # WHEN the group is processed
        result = process_group(Group("g", (Source(gone), *(Source(u) for u in good)), "g.csv", MergeMode.CSV), ctx)
    finally:
        fetcher.close()
        files.shutdown()
    # THEN it fails permanently on the 404 after that one request; the queued files were never fetched
    assert not result.ok and not result.retryable and "404" in (result.error or "")
    assert result.attempts == 1
    assert sum(fault_origin.requests(f"/{i}.csv") for i in range(5)) == 0
    assert not (tmp_path / "out/g.csv").exists()


def test_a_stored_groups_file_futures_are_freed_by_reference_counting(fault_origin, tmp_path):
    # GIVEN a group of 5 files, each future the fetcher hands out watched, and the cycle collector off
    fetcher, files, ctx = _context(fault_origin, tmp_path, pool_size=2)
    urls = [fault_origin.add(f"/{i}.csv", ok(b"n\n1\n")) for i in range(5)]
    watched: list[weakref.ref] = []
    fetch_async = fetcher.fetch_async

    def watching(*args, **kwargs):
        future = fetch_async(*args, **kwargs)
        watched.append(weakref.ref(future))
        return future

    fetcher.fetch_async = watching  # type: ignore[method-assign]
    gc.collect()
    gc.disable()
    try:
        # WHEN the group is processed and the fetcher closed
        result = process_group(Group("g", tuple(Source(u) for u in urls), "g.csv", MergeMode.CSV), ctx)
        fetcher.close()
        files.shutdown()
        # THEN no future outlives the group: none is held by a cycle through its done-callback
        assert result.ok and len(watched) == 5
        assert [ref() for ref in watched] == [None] * 5
    finally:
        gc.enable()

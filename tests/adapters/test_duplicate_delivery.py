"""At-least-once delivery, exactly-once output: the same group processed twice at the same moment
(two workers holding duplicate messages) stores one output, and only one result counts as a write."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto import mock_aws

from fanfetch.adapters.local_store import LocalStore
from fanfetch.adapters.s3 import S3Store
from fanfetch.app.services import GroupContext, process_group
from fanfetch.core.models import FileResult, Group, MergeMode, Source
from tests.fakes import FakeClock

GROUP = Group(group_id="g", sources=(Source("https://o.example/1"), Source("https://o.example/2")),
              key="stations/g.csv", merge=MergeMode.CSV)


class _LockstepFetcher:
    """Both deliveries finish downloading before either stores: the race is forced, not hoped for."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=10)
        self.calls = 0
        self._lock = threading.Lock()

    def fetch(self, source, dest, *, deadline=None):
        with self._lock:
            self.calls += 1
        dest.write(b"h\n" + source.url[-1].encode() + b"\n")
        if source.url.endswith("/2"):
            self.barrier.wait()
        return FileResult(url=source.url, bytes=4, attempts=1)


def _race(store, tmp_path) -> list:
    fetcher = _LockstepFetcher()
    with ThreadPoolExecutor(max_workers=8) as files, ThreadPoolExecutor(max_workers=2) as deliveries:
        ctx = GroupContext(fetcher=fetcher, store=store, files=files, clock=FakeClock(),
                           spool_dir=str(tmp_path) if isinstance(store, LocalStore) else None)
        return list(deliveries.map(lambda _: process_group(GROUP, ctx), range(2)))


def test_two_concurrent_deliveries_store_one_local_output(tmp_path):
    store = LocalStore(str(tmp_path / "out"))
    store.ensure_tmp_dir()
    results = _race(store, tmp_path / "out" / ".fanfetch-tmp")
    assert all(r.ok for r in results)
    assert sorted(r.skipped for r in results) == [False, True]  # one write, one "already done"
    assert (tmp_path / "out" / "stations" / "g.csv").read_bytes() == b"h\n1\n2\n"


def test_two_concurrent_deliveries_store_one_s3_output(tmp_path, aws_env):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="out")
        puts = []
        client.meta.events.register("after-call.s3.PutObject",
                                    lambda **kw: puts.append(kw["http_response"].status_code))
        results = _race(S3Store(client, "out"), tmp_path)
        assert all(r.ok for r in results)
        assert sorted(r.skipped for r in results) == [False, True]
        assert sorted(puts) == [200, 412]  # the second write was refused by the condition, not overwritten
        assert client.get_object(Bucket="out", Key="stations/g.csv")["Body"].read() == b"h\n1\n2\n"


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_a_redelivery_after_a_crash_between_store_and_ack_downloads_nothing(tmp_path, store_kind, aws_env):
    with mock_aws():
        if store_kind == "s3":
            client = boto3.client("s3")
            client.create_bucket(Bucket="out")
            store = S3Store(client, "out")
        else:
            store = LocalStore(str(tmp_path))
        fetcher = _LockstepFetcher()
        fetcher.barrier = threading.Barrier(1)
        with ThreadPoolExecutor(max_workers=2) as files:
            ctx = GroupContext(fetcher=fetcher, store=store, files=files, clock=FakeClock())
            first = process_group(GROUP, ctx)  # stored; imagine the worker dies before deleting the message
            calls = fetcher.calls
            second = process_group(GROUP, ctx)  # the redelivery
        assert first.ok and not first.skipped
        assert second.ok and second.skipped and second.sha256 == first.sha256
        assert fetcher.calls == calls


CHANGED = Group(group_id="g", sources=(*GROUP.sources, Source("https://o.example/3")), key=GROUP.key,
                merge=MergeMode.CSV)


def _race_changed(store, spool_dir) -> list:
    fetcher = _LockstepFetcher()
    with ThreadPoolExecutor(max_workers=8) as files, ThreadPoolExecutor(max_workers=2) as deliveries:
        ctx = GroupContext(fetcher=fetcher, store=store, files=files, clock=FakeClock(), spool_dir=spool_dir)
        return list(deliveries.map(lambda _: process_group(CHANGED, ctx), range(2)))


def test_two_concurrent_deliveries_of_a_changed_definition_replace_a_stale_local_output_once(tmp_path):
    # GIVEN the output of the group's earlier definition (two files)
    store = LocalStore(str(tmp_path / "out"))
    spool = store.ensure_tmp_dir()
    with ThreadPoolExecutor(max_workers=2) as files:
        fetcher = _LockstepFetcher()
        fetcher.barrier = threading.Barrier(1)
        assert process_group(GROUP, GroupContext(fetcher=fetcher, store=store, files=files, clock=FakeClock(),
                                                 spool_dir=spool)).ok
    # WHEN the definition gains a file and two deliveries of it race
    results = _race_changed(store, spool)
    # THEN exactly one replaces the stale output, the other counts it as done; the output is the new one
    assert all(r.ok for r in results)
    assert sorted(r.skipped for r in results) == [False, True]
    assert (tmp_path / "out" / "stations" / "g.csv").read_bytes() == b"h\n1\n2\n3\n"


def test_two_concurrent_deliveries_of_a_changed_definition_replace_a_stale_s3_output_once(tmp_path, aws_env):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="out")
        store = S3Store(client, "out")
        with ThreadPoolExecutor(max_workers=2) as files:
            fetcher = _LockstepFetcher()
            fetcher.barrier = threading.Barrier(1)
            assert process_group(GROUP, GroupContext(fetcher=fetcher, store=store, files=files, clock=FakeClock()))
        puts = []
        client.meta.events.register("after-call.s3.PutObject",
                                    lambda **kw: puts.append(kw["http_response"].status_code))
        results = _race_changed(store, str(tmp_path))
        assert all(r.ok for r in results)
        assert sorted(r.skipped for r in results) == [False, True]
        assert sorted(puts) == [200, 412]  # If-Match on the stale object's ETag: the second replace is refused
        assert client.get_object(Bucket="out", Key="stations/g.csv")["Body"].read() == b"h\n1\n2\n3\n"

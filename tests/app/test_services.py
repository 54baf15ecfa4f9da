"""process_group and enqueue_job through in-memory fakes: what gets stored, skipped, or reported."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.app import group_output
from fanfetch.app.engine import NOT_STARTED, run_groups
from fanfetch.app.group_output import done_marker_key
from fanfetch.app.services import GroupContext, enqueue_job, process_group
from fanfetch.core.fingerprint import fingerprint_group
from fanfetch.core.messages import decode_message
from fanfetch.core.models import Group, GroupStatus, Job, MergeMode, Source
from fanfetch.errors import PermanentFetchError, RetryableFetchError, RetryableStoreError
from tests.fakes import FakeClock, FakeFetcher, MemoryQueue, MemoryStore

H = "https://origin.example"


def _group(gid: str, names: list[str], merge: MergeMode = MergeMode.CSV, key: str | None = None) -> Group:
    return Group(group_id=gid, sources=tuple(Source(f"{H}/{n}") for n in names),
                 key=key or f"stations/{gid}.csv", merge=merge)


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _ctx(fetcher, store, pool, clock=None) -> GroupContext:
    return GroupContext(fetcher=fetcher, store=store, files=pool, clock=clock or FakeClock())


def test_a_group_is_merged_in_manifest_order_and_stored_once(pool):
    # GIVEN three yearly CSVs with the same header, the middle one missing its final newline
    fetcher = FakeFetcher({f"{H}/1990": b"d,t\n1990,1\n", f"{H}/1991": b"d,t\n1991,2", f"{H}/1992": b"d,t\n1992,3\n"})
    store = MemoryStore()
    # WHEN the group is processed
    result = process_group(_group("s1", ["1990", "1991", "1992"]), _ctx(fetcher, store, pool))
    # THEN one object holds the header once and every row in order, and the result describes it
    assert store.objects["stations/s1.csv"] == b"d,t\n1990,1\n1991,2\n1992,3\n"
    assert store.puts == {"stations/s1.csv": 1}
    assert result.status is GroupStatus.OK and result.files == 3
    assert result.bytes == len(store.objects["stations/s1.csv"])
    assert result.sha256 == store.sha["stations/s1.csv"] and result.attempts == 3


def test_a_group_already_stored_is_skipped_without_any_request(pool):
    # GIVEN the output exists with this definition's fingerprint (stores are atomic: existing means complete)
    store = MemoryStore()
    store.put_bytes("stations/s1.csv", b"done\n", fingerprint=fingerprint_group(_group("s1", ["a"])))
    fetcher = FakeFetcher({f"{H}/a": b"x"})
    # WHEN the group is processed again
    result = process_group(_group("s1", ["a"]), _ctx(fetcher, store, pool))
    # THEN nothing is fetched or rewritten and the result says so
    assert fetcher.calls == {}
    assert store.puts == {"stations/s1.csv": 1}
    assert result.ok and result.skipped and result.bytes == 5


def test_one_permanently_failing_file_fails_the_group_and_nothing_is_stored(pool):
    fetcher = FakeFetcher({f"{H}/a": b"h\n1\n", f"{H}/b": PermanentFetchError(f"{H}/b", "HTTP 404", status=404)})
    store = MemoryStore()
    result = process_group(_group("s1", ["a", "b"]), _ctx(fetcher, store, pool))
    assert result.status is GroupStatus.FAILED and not result.retryable
    assert "HTTP 404" in (result.error or "") and f"{H}/b" in (result.error or "")
    assert store.objects == {}


def test_a_transient_failure_is_reported_retryable(pool):
    fetcher = FakeFetcher({f"{H}/a": RetryableFetchError(f"{H}/a", "HTTP 503", status=503, attempts=6)})
    result = process_group(_group("s1", ["a"]), _ctx(fetcher, MemoryStore(), pool))
    assert not result.ok and result.retryable and result.attempts == 6


def test_a_store_failure_fails_the_group_without_raising(pool):
    store = MemoryStore()
    store.fail_with = RetryableStoreError("upload s3://b/k: SlowDown")
    result = process_group(_group("s1", ["a"]), _ctx(FakeFetcher({f"{H}/a": b"x"}), store, pool))
    assert not result.ok and result.retryable and "SlowDown" in (result.error or "")


def test_merge_none_stores_each_file_then_the_done_marker(pool):
    group = _group("g", ["x/data.bin", "y/data.bin"], merge=MergeMode.NONE, key="raw/g/")
    store = MemoryStore()
    result = process_group(group, _ctx(FakeFetcher({f"{H}/x/data.bin": b"1", f"{H}/y/data.bin": b"22"}), store, pool))
    assert result.ok and result.bytes == 3
    files = {k: v for k, v in store.objects.items() if not k.endswith("_fanfetch.json")}
    assert sorted(files.values()) == [b"1", b"22"] and all(k.startswith("raw/g/") for k in files)
    marker = json.loads(store.objects[done_marker_key(group)])
    assert [f["url"] for f in marker["files"]] == [f"{H}/x/data.bin", f"{H}/y/data.bin"]


def test_groups_past_the_deadline_are_not_started_and_reported_retryable(pool):
    # GIVEN a clock already past the deadline
    clock = FakeClock(start=100.0)
    fetcher = FakeFetcher({f"{H}/a": b"x"})
    # WHEN two groups are run
    results = run_groups([_group("a", ["a"]), _group("b", ["a"])], _ctx(fetcher, MemoryStore(), pool, clock),
                         group_workers=2, deadline=99.0)
    # THEN neither made a request; both are retryable failures
    assert fetcher.calls == {}
    assert all(not r.ok and r.retryable and "deadline" in (r.error or "") for r in results)


def test_a_stop_request_leaves_unstarted_groups_reported_as_not_started(pool):
    results = run_groups([_group("a", ["a"])], _ctx(FakeFetcher({f"{H}/a": b"x"}), MemoryStore(), pool),
                         group_workers=1, should_stop=lambda: True)
    assert results[0].error == NOT_STARTED and results[0].retryable


def test_enqueue_sends_one_decodable_message_per_group():
    job = Job(job_id="j1", groups=(_group("a", ["1"]), _group("b", ["2", "3"])))
    queue = MemoryQueue()
    outcome = enqueue_job(job, queue)
    assert outcome.to_dict() == {"job_id": "j1", "groups": 2, "messages": 2}
    assert [decode_message(b).group for b in queue.bodies] == list(job.groups)


# --- files stored as they are: the fetcher's sha256, no second read -----------------------------


class _CheckingStore(MemoryStore):
    """A MemoryStore that records, per key, whether the sha256 it was given is that of the file's bytes."""

    def __init__(self):
        super().__init__()
        self.sha_right: dict[str, bool] = {}

    def put_file(self, key, path, *, sha256, **options):
        with open(path, "rb") as handle:
            self.sha_right[key] = hashlib.sha256(handle.read()).hexdigest() == sha256
        return super().put_file(key, path, sha256=sha256, **options)


class _NoDigestFetcher(FakeFetcher):
    """A fetcher that takes ``digest=True`` but cannot compute it (returns sha256=None)."""

    def fetch(self, source, dest, *, deadline=None, validator=None, digest=False):
        return dataclasses.replace(super().fetch(source, dest, deadline=deadline, validator=validator), sha256=None)


@pytest.fixture
def hash_file_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = group_output._hash_file

    def spy(handle, chunk_bytes):
        calls.append(1)
        return real(handle, chunk_bytes)

    monkeypatch.setattr(group_output, "_hash_file", spy)
    return calls


def test_a_one_file_concat_group_stores_the_fetchers_sha256_without_reading_the_file_again(pool, hash_file_calls):
    # GIVEN a one-file concat group (stored byte for byte) and a fetcher that hashes while downloading
    body = b"station,t\n" + bytes(range(256)) * 40
    fetcher, store = FakeFetcher({f"{H}/big.bin": body}), _CheckingStore()
    group = _group("g", ["big.bin"], merge=MergeMode.CONCAT, key="files/big.bin")
    # WHEN the group is processed
    result = process_group(group, _ctx(fetcher, store, pool))
    # THEN the fetcher was asked for a digest, and the stored object carries the sha256 of its bytes
    assert fetcher.digests == {f"{H}/big.bin": 1}
    assert store.objects["files/big.bin"] == body and store.sha_right == {"files/big.bin": True}
    assert result.ok and result.sha256 == hashlib.sha256(body).hexdigest() and result.bytes == len(body)
    # AND the service did not hash the file itself
    assert hash_file_calls == []


def test_merge_none_stores_each_file_with_the_fetchers_sha256(pool, hash_file_calls):
    # GIVEN a group stored file by file
    bodies = {f"{H}/a.csv": b"a\n1\n", f"{H}/b.csv": b"b\n2\n"}
    fetcher, store = FakeFetcher(bodies), _CheckingStore()
    group = _group("s", ["a.csv", "b.csv"], merge=MergeMode.NONE, key="raw/s")
    # WHEN processed
    result = process_group(group, _ctx(fetcher, store, pool))
    # THEN each file and the marker's index carry the sha256 of the stored bytes, none hashed by the service
    assert result.ok and fetcher.digests == {url: 1 for url in bodies}
    assert store.sha_right == {"raw/s/a.csv": True, "raw/s/b.csv": True}
    index = json.loads(store.objects[done_marker_key(group)])
    assert [f["sha256"] for f in index["files"]] == [hashlib.sha256(b).hexdigest() for b in bodies.values()]
    assert hash_file_calls == []


def test_merged_groups_do_not_ask_the_fetcher_for_a_digest(pool):
    # GIVEN a CSV group (its merged output is hashed as it is written)
    fetcher = FakeFetcher({f"{H}/1": b"h\n1\n", f"{H}/2": b"h\n2\n"})
    # WHEN processed / THEN no file was hashed by the fetcher
    assert process_group(_group("s", ["1", "2"]), _ctx(fetcher, MemoryStore(), pool)).ok
    assert fetcher.digests == {}


def test_a_fetcher_without_a_digest_falls_back_to_hashing_the_file(pool, hash_file_calls):
    # GIVEN a fetcher that returns no sha256 even when asked
    body = b"x" * 5000
    fetcher, store = _NoDigestFetcher({f"{H}/f.bin": body}), _CheckingStore()
    group = _group("g", ["f.bin"], merge=MergeMode.CONCAT, key="files/f.bin")
    # WHEN processed / THEN the service hashed the file itself, and stored the right sha256
    result = process_group(group, _ctx(fetcher, store, pool))
    assert result.ok and store.sha_right == {"files/f.bin": True} and hash_file_calls == [1]

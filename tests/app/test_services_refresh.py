"""Refresh (incremental) runs: ask the origin again, rewrite only the groups whose content changed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.app.services import GroupContext, process_group
from fanfetch.core.ledger import Validator
from fanfetch.core.models import Group, MergeMode, Source
from tests.fakes import FakeClock, FakeFetcher, MemoryStore

H = "https://origin.example"
GROUP = Group(group_id="s1", sources=(Source(f"{H}/1990"), Source(f"{H}/1991")), key="stations/s1.csv",
              merge=MergeMode.CSV)
BODIES = {f"{H}/1990": b"d,t\n1990,1\n", f"{H}/1991": b"d,t\n1991,2\n"}


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _first_run(pool, fetcher, store, memory):
    """A plain run, remembering validators the way the ledger does."""
    result = process_group(GROUP, GroupContext(fetcher=fetcher, store=store, files=pool, clock=FakeClock()))
    memory[GROUP.key] = (result.sha256, tuple(Validator(r.url, etag=r.etag) for r in result.file_results))
    return result


def _refresh(pool, fetcher, store, memory):
    ctx = GroupContext(fetcher=fetcher, store=store, files=pool, clock=FakeClock(), previous=memory.get)
    return process_group(GROUP, ctx, refresh=True)


def test_unchanged_origin_answers_304_and_nothing_is_rewritten_or_transferred(pool):
    # GIVEN a first run against an origin that sends ETags
    store, memory = MemoryStore(), {}
    etags = {f"{H}/1990": '"a"', f"{H}/1991": '"b"'}
    _first_run(pool, FakeFetcher(BODIES, etags=etags), store, memory)
    # WHEN a refresh run finds nothing changed
    fetcher = FakeFetcher(BODIES, etags=etags)
    result = _refresh(pool, fetcher, store, memory)
    # THEN every request was conditional, no body was transferred, and the output was not rewritten
    assert result.ok and result.change == "unchanged"
    assert fetcher.conditional == {f"{H}/1990": 1, f"{H}/1991": 1} and fetcher.bytes_sent == 0
    assert store.puts == {GROUP.key: 1}


def test_one_changed_file_rewrites_the_group_with_the_new_bytes(pool):
    store, memory = MemoryStore(), {}
    _first_run(pool, FakeFetcher(BODIES, etags={f"{H}/1990": '"a"', f"{H}/1991": '"b"'}), store, memory)
    # GIVEN the origin changed 1991
    changed = dict(BODIES, **{f"{H}/1991": b"d,t\n1991,99\n"})
    fetcher = FakeFetcher(changed, etags={f"{H}/1990": '"a"', f"{H}/1991": '"b2"'})
    # WHEN refreshed
    result = _refresh(pool, fetcher, store, memory)
    # THEN the output is replaced by the merge of the unchanged and the changed file
    assert result.ok and result.change == "changed"
    assert store.objects[GROUP.key] == b"d,t\n1990,1\n1991,99\n"
    assert store.puts == {GROUP.key: 2}


def test_without_validators_the_content_hash_decides_and_same_bytes_are_not_rewritten(pool):
    store, memory = MemoryStore(), {}
    _first_run(pool, FakeFetcher(BODIES), store, memory)
    result = _refresh(pool, FakeFetcher(BODIES), store, memory)
    assert result.ok and result.change == "unchanged"
    assert store.puts == {GROUP.key: 1}


def test_without_validators_changed_bytes_are_rewritten(pool):
    store, memory = MemoryStore(), {}
    _first_run(pool, FakeFetcher(BODIES), store, memory)
    result = _refresh(pool, FakeFetcher(dict(BODIES, **{f"{H}/1990": b"d,t\n1990,7\n"})), store, memory)
    assert result.change == "changed" and store.objects[GROUP.key].startswith(b"d,t\n1990,7\n")


def test_a_group_never_stored_before_is_new(pool):
    store = MemoryStore()
    result = _refresh(pool, FakeFetcher(BODIES), store, {})
    assert result.ok and result.change == "new" and store.puts == {GROUP.key: 1}

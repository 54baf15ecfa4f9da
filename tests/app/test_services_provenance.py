"""process_group skips only an output carrying its definition's fingerprint; anything else at the key is
replaced (conditionally on that very object); ``none`` groups keep their index apart and no stale file."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.app.group_output import done_marker_key
from fanfetch.app.services import GroupContext, process_group
from fanfetch.core.fingerprint import fingerprint_group
from fanfetch.core.models import Group, MergeMode, Source
from tests.fakes import FakeClock, FakeFetcher, MemoryStore

H = "https://origin.example"


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _group(years: list[int], *, merge: MergeMode = MergeMode.CSV, key: str = "stations/s.csv", **check) -> Group:
    return Group(group_id="s", sources=tuple(Source(f"{H}/{y}", **check) for y in years), key=key, merge=merge)


def _bodies(years) -> dict[str, bytes]:
    return {f"{H}/{y}": f"d,t\n{y},1\n".encode() for y in years}


def _ctx(fetcher, store, pool) -> GroupContext:
    return GroupContext(fetcher=fetcher, store=store, files=pool, clock=FakeClock())


def test_the_fingerprint_covers_urls_in_order_checks_merge_and_missing_policy_but_not_key_or_id() -> None:
    base = _group([2002, 2003])
    variants = [
        _group([2002, 2003, 2004]),
        _group([2003, 2002]),
        _group([2002, 2003], size=9),
        _group([2002, 2003], sha256="0" * 64),
        _group([2002, 2003], merge=MergeMode.CONCAT),
    ]
    prints = {fingerprint_group(g) for g in [base, *variants]}
    assert len(prints) == 1 + len(variants)
    moved = Group(group_id="other", sources=base.sources, key="elsewhere.csv", merge=base.merge)
    assert fingerprint_group(moved) == fingerprint_group(base)
    assert fingerprint_group(base).startswith("v1-") and len(fingerprint_group(base)) == 35


def test_an_on_missing_policy_other_than_fail_changes_the_fingerprint() -> None:
    # (the field belongs to the group model once the missing-file policy exists; absent means "fail")
    class _WithPolicy:
        def __init__(self, group: Group, on_missing: str):
            self.__dict__.update(group.__dict__, on_missing=on_missing)

    base = _group([2002])
    assert fingerprint_group(_WithPolicy(base, "fail")) == fingerprint_group(base)  # type: ignore[arg-type]
    assert fingerprint_group(_WithPolicy(base, "skip")) != fingerprint_group(base)  # type: ignore[arg-type]


def test_an_output_of_an_older_definition_is_fetched_again_and_replaced(pool):
    # GIVEN the output of the station's 2002-2003 definition
    store = MemoryStore()
    fetcher = FakeFetcher(_bodies([2002, 2003, 2004, 2005]))
    assert process_group(_group([2002, 2003]), _ctx(fetcher, store, pool)).ok
    # WHEN the definition grows to 2002-2005
    result = process_group(_group([2002, 2003, 2004, 2005]), _ctx(fetcher, store, pool))
    # THEN every year is fetched and the output replaced, carrying the new fingerprint
    assert result.ok and not result.skipped and result.files == 4
    assert store.objects["stations/s.csv"] == b"d,t\n2002,1\n2003,1\n2004,1\n2005,1\n"
    assert store.fingerprints["stations/s.csv"] == fingerprint_group(_group([2002, 2003, 2004, 2005]))
    assert store.puts == {"stations/s.csv": 2}


def test_an_object_fanfetch_did_not_write_is_replaced_never_counted_done(pool):
    # GIVEN an object at the key without a fingerprint
    store = MemoryStore()
    store.put_bytes("stations/s.csv", b"not ours\n")
    # WHEN the group runs
    result = process_group(_group([2002]), _ctx(FakeFetcher(_bodies([2002])), store, pool))
    # THEN it is fetched and stored over the foreign object
    assert result.ok and not result.skipped and store.objects["stations/s.csv"] == b"d,t\n2002,1\n"


def test_a_refresh_of_a_stale_output_ignores_its_validators_and_rewrites_it(pool):
    # GIVEN a stale output whose remembered validators would all answer 304
    store = MemoryStore()
    fetcher = FakeFetcher(_bodies([2002, 2003]), etags={f"{H}/2002": '"a"'})
    assert process_group(_group([2002]), _ctx(fetcher, store, pool)).ok
    from fanfetch.core.ledger import Validator

    ctx = GroupContext(fetcher=fetcher, store=store, files=pool, clock=FakeClock(),
                       previous=lambda key: (None, (Validator(url=f"{H}/2002", etag='"a"'),)))
    # WHEN the refreshed definition has another year
    result = process_group(_group([2002, 2003]), ctx, refresh=True)
    # THEN it is not "unchanged": both years are stored
    assert result.ok and result.change == "changed" and store.objects["stations/s.csv"] == b"d,t\n2002,1\n2003,1\n"


def test_merge_none_never_lets_a_file_take_the_index_name(pool):
    # GIVEN a none group one of whose URLs is literally named like the index
    group = Group(group_id="s", sources=(Source(f"{H}/_fanfetch.json"), Source(f"{H}/a.csv")), key="raw/s/",
                  merge=MergeMode.NONE)
    store = MemoryStore()
    fetcher = FakeFetcher({f"{H}/_fanfetch.json": b"user data\n", f"{H}/a.csv": b"a\n"})
    # WHEN stored
    assert process_group(group, _ctx(fetcher, store, pool)).ok
    # THEN the file is kept under another name and the index is the index
    index = json.loads(store.objects[done_marker_key(group)])
    (renamed,) = [f["name"] for f in index["files"] if f["url"].endswith("_fanfetch.json")]
    assert renamed != "_fanfetch.json" and store.objects[f"raw/s/{renamed}"] == b"user data\n"
    assert index["fingerprint"] == fingerprint_group(group)


def test_merge_none_replaces_a_stale_file_left_by_an_interrupted_run(pool):
    # GIVEN a file left in the group's folder by an interrupted run (no index), with other bytes
    group = Group(group_id="s", sources=(Source(f"{H}/a.csv"), Source(f"{H}/b.csv")), key="raw/s/",
                  merge=MergeMode.NONE)
    store = MemoryStore()
    store.put_bytes("raw/s/a.csv", b"old a\n")
    fetcher = FakeFetcher({f"{H}/a.csv": b"new a\n", f"{H}/b.csv": b"b\n"})
    # WHEN the group runs
    assert process_group(group, _ctx(fetcher, store, pool)).ok
    # THEN the file holds the bytes the index lists
    index = {f["name"]: f["sha256"] for f in json.loads(store.objects[done_marker_key(group)])["files"]}
    assert store.objects["raw/s/a.csv"] == b"new a\n"
    assert index["a.csv"] == hashlib.sha256(b"new a\n").hexdigest()
    # AND a file already holding the right bytes (an earlier delivery of this definition) is not written again
    store.puts.clear()
    store.put_bytes(done_marker_key(group), b"{}")  # an index without fingerprint: not done
    assert process_group(group, _ctx(fetcher, store, pool)).ok
    assert "raw/s/a.csv" not in store.puts and store.puts[done_marker_key(group)] == 2

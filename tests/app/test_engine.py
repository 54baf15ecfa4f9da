"""run_groups streams groups to the scheduler: a few ahead of the workers, never all of them up front,
with results still in input order and a bug in a group surfacing instead of a lost group."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.app.engine import run_groups
from fanfetch.app.services import GroupContext
from fanfetch.core.models import Group, MergeMode, Source
from tests.fakes import FakeClock, FakeFetcher, MemoryStore

H = "https://origin.example"


def _groups(count: int, pulled: list[int]):
    for i in range(count):
        pulled[0] += 1
        yield Group(f"g{i}", (Source(f"{H}/{i}"),), f"out/{i}.csv", MergeMode.CONCAT)


class _CountingFetcher(FakeFetcher):
    """Records how many groups had been taken from the manifest when the first download started."""

    def __init__(self, bodies, pulled: list[int]):
        super().__init__(bodies)
        self.pulled = pulled
        self.pulled_at_first: int | None = None
        self._first = threading.Lock()

    def fetch(self, source, dest, **kwargs):
        with self._first:
            if self.pulled_at_first is None:
                self.pulled_at_first = self.pulled[0]
        return super().fetch(source, dest, **kwargs)


def test_groups_are_taken_a_few_ahead_of_the_workers_not_all_up_front():
    # GIVEN 5,000 groups from a lazy source, and 4 group workers
    pulled = [0]
    fetcher = _CountingFetcher({f"{H}/{i}": b"%d\n" % i for i in range(5_000)}, pulled)
    with ThreadPoolExecutor(max_workers=4) as files:
        ctx = GroupContext(fetcher=fetcher, store=MemoryStore(), files=files, clock=FakeClock())
        # WHEN they run
        results = run_groups(_groups(5_000, pulled), ctx, group_workers=4, keep_file_results=False)
    # THEN the first download started with at most 2 × 4 groups (+1 being handed over) taken from the source
    assert fetcher.pulled_at_first is not None and fetcher.pulled_at_first <= 9
    # AND every group was processed, results in input order
    assert [r.group_id for r in results] == [f"g{i}" for i in range(5_000)]
    assert all(r.ok for r in results)


def test_a_bug_while_processing_a_group_surfaces_and_stops_taking_groups():
    # GIVEN an on_result hook that fails (a bug), and a lazy source of 1,000 groups
    pulled = [0]
    fetcher = FakeFetcher({f"{H}/{i}": b"x" for i in range(1_000)})

    def broken(result):
        raise RuntimeError("bug in on_result")

    with ThreadPoolExecutor(max_workers=2) as files:
        ctx = GroupContext(fetcher=fetcher, store=MemoryStore(), files=files, clock=FakeClock())
        # WHEN run / THEN the bug is raised, and the source was not drained to the end
        with pytest.raises(RuntimeError, match="bug in on_result"):
            run_groups(_groups(1_000, pulled), ctx, group_workers=2, on_result=broken)
    assert pulled[0] < 1_000


def test_a_stopped_run_answers_the_remaining_groups_itself_and_can_keep_no_results():
    # GIVEN a run already told to stop, 2,000 groups, and a hook noting which thread answers each
    pulled = [0]
    fetcher = FakeFetcher({})
    answered_by: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as files:
        ctx = GroupContext(fetcher=fetcher, store=MemoryStore(), files=files, clock=FakeClock())
        # WHEN it runs keeping no results (a million-group run's way)
        results = run_groups(_groups(2_000, pulled), ctx, group_workers=4, should_stop=lambda: True,
                             on_result=lambda r: answered_by.append(threading.current_thread().name),
                             keep_results=False)
    # THEN every group was answered "not started" by the caller's thread (no hand-off to a worker), nothing kept
    assert results == [] and pulled[0] == 2_000
    assert answered_by == [threading.current_thread().name] * 2_000
    assert fetcher.calls == {}

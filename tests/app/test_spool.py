"""The spool budget: groups wait for room on the temp disk, one that can never fit is refused naming the sizes,
and a full disk (ENOSPC) fails a group as a classified error instead of crashing the batch."""

from __future__ import annotations

import errno
import threading
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.app import group_output
from fanfetch.app.engine import run_groups
from fanfetch.app.services import GroupContext, process_group
from fanfetch.app.spool import MIB, MeteredPart, SpoolBudget, classify_spool_error, spool_margin
from fanfetch.core.models import Group, GroupStatus, MergeMode, Source
from fanfetch.errors import DiskFull, TooLargeForSpool
from tests.fakes import FakeClock, FakeFetcher, MemoryStore

H = "https://origin.example"
Usage = namedtuple("Usage", "total used free")


def _group(gid: str, sizes: list[int | None], *, merge: MergeMode = MergeMode.CONCAT) -> Group:
    return Group(group_id=gid, sources=tuple(Source(f"{H}/{gid}/{i}", size=s) for i, s in enumerate(sizes)),
                 key=f"{gid}.bin", merge=merge)


def _bodies(group: Group, size: int) -> dict[str, bytes]:
    return {s.url: bytes([i % 251]) * size for i, s in enumerate(group.sources)}


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def _ctx(fetcher, store, pool, spool, tmp_path) -> GroupContext:
    return GroupContext(fetcher=fetcher, store=store, files=pool, clock=FakeClock(), spool=spool,
                        spool_dir=str(tmp_path), spool_memory_bytes=0)


def test_the_budget_is_the_free_space_minus_a_margin_and_capped():
    # GIVEN a 160 MiB disk with 150 MiB free
    budget = SpoolBudget.for_dir("/spool", disk_usage=lambda path: Usage(160 * MIB, 10 * MIB, 150 * MIB))
    # THEN the budget keeps 16 MiB back; a cap lowers it; a re-measure follows the disk
    assert budget.total == 150 * MIB - spool_margin(160 * MIB) == 134 * MIB
    capped = SpoolBudget.for_dir("/spool", cap_bytes=100 * MIB,
                                 disk_usage=lambda path: Usage(160 * MIB, 10 * MIB, 150 * MIB))
    assert capped.total == 100 * MIB
    free = [150 * MIB]
    moving = SpoolBudget.for_dir("/spool", disk_usage=lambda path: Usage(160 * MIB, 0, free[0]))
    free[0] = 40 * MIB
    assert moving.remeasure() == 24 * MIB
    assert spool_margin(10 * 2**30) == 256 * MIB and spool_margin(2048 * MIB) == 2048 * MIB // 20


def test_merged_groups_wait_for_room_and_the_groups_in_flight_never_hold_more_than_the_budget(pool, tmp_path):
    # GIVEN a 100 KiB spool budget and six groups of two declared 20 KiB files, merged (each needs 80 KiB)
    groups = [_group(f"g{i}", [20 * 1024, 20 * 1024]) for i in range(6)]
    fetcher = FakeFetcher({u: b for g in groups for u, b in _bodies(g, 20 * 1024).items()})
    store, spool = MemoryStore(), SpoolBudget(lambda: 100 * 1024)
    # WHEN all six run with six group workers
    results = run_groups(groups, _ctx(fetcher, store, pool, spool, tmp_path), group_workers=6)
    # THEN every group is stored, one at a time (two would need 160 KiB), and nothing is held afterwards
    assert all(r.ok for r in results) and len(store.objects) == 6
    assert spool.peak_holders == 1 and spool.peak_used == 80 * 1024
    assert spool.used == 0 and spool.holders == 0


def test_groups_that_fit_together_run_together(pool, tmp_path):
    # GIVEN a budget that holds two 40 KiB groups at once
    spool = SpoolBudget(lambda: 100 * 1024)
    a = spool.hold("a", [20 * 1024], factor=2)
    b = spool.hold("b", [20 * 1024], factor=2)  # does not wait
    # THEN both are held within the budget; a third would have to wait
    assert spool.holders == 2 and spool.used == 80 * 1024 <= spool.total
    a.release()
    b.release()
    b.release()  # a second release changes nothing
    assert spool.used == 0 and spool.holders == 0


def test_a_group_declaring_more_than_the_whole_budget_fails_permanently_before_any_request(pool, tmp_path):
    # GIVEN a 100 KiB budget and a merged group declaring 2 x 40 KiB (needs 160 KiB)
    group = _group("big", [40 * 1024, 40 * 1024])
    fetcher = FakeFetcher(_bodies(group, 40 * 1024))
    # WHEN it is processed
    result = process_group(group, _ctx(fetcher, MemoryStore(), pool, SpoolBudget(lambda: 100 * 1024), tmp_path))
    # THEN it fails permanently, naming what it needs and what the budget is, without a request
    assert result.status is GroupStatus.FAILED and not result.retryable
    assert "0.2 MiB of temp space" in result.error and "spool budget is 0.1 MiB" in result.error
    assert fetcher.calls == {}


def test_a_group_of_unknown_size_that_outgrows_the_budget_is_stopped_and_fails_permanently(pool, tmp_path):
    # GIVEN a 100 KiB budget and a merged group of two undeclared 60 KiB files
    group = _group("big", [None, None])
    spool = SpoolBudget(lambda: 100 * 1024)
    store = MemoryStore()
    # WHEN it is processed
    result = process_group(group, _ctx(FakeFetcher(_bodies(group, 60 * 1024)), store, pool, spool, tmp_path))
    # THEN the meter stops it as soon as it cannot fit (60 KiB written x 2 > 100 KiB): permanent, sizes named
    assert result.status is GroupStatus.FAILED and not result.retryable
    assert "needs more than" in result.error and "spool budget is 0.1 MiB" in result.error
    assert store.objects == {} and spool.used == 0 and list(tmp_path.iterdir()) == []


def test_sizes_measured_so_far_size_the_next_undeclared_groups(pool, tmp_path):
    # GIVEN a first group measured at 10 KiB per file
    spool = SpoolBudget(lambda: 100 * 1024)
    first = _group("first", [None, None])
    assert process_group(first, _ctx(FakeFetcher(_bodies(first, 10 * 1024)), MemoryStore(), pool, spool,
                                     tmp_path)).ok
    # THEN an undeclared three-file merged group is estimated at 3 x 10 KiB x 2; a declared size wins
    assert spool.estimate([None, None, None], factor=2) == 60 * 1024
    assert spool.estimate([5, None], factor=1) == 5 + 10 * 1024
    # AND before anything is measured, an undeclared group's need is unknown: it runs alone
    fresh = SpoolBudget(lambda: 100 * 1024)
    assert fresh.estimate([None], factor=2) is None
    alone = fresh.hold("alone", [None], factor=2)
    assert fresh.holders == 1 and fresh.used == 0
    alone.release()


def test_groups_of_unknown_size_waiting_to_run_alone_start_together_once_sizes_are_measured():
    # GIVEN nothing measured yet: a first group of unknown size runs alone, a second one waits behind it
    spool = SpoolBudget(lambda: 100 * 1024)
    first = spool.hold("first", [None], factor=1)
    checked = threading.Event()
    admitted: list[object] = []

    def give_up():
        checked.set()
        return None

    def second():
        admitted.append(spool.hold("second", [None, None], factor=2, give_up=give_up))

    waiter = threading.Thread(target=second)
    waiter.start()
    assert checked.wait(5)
    assert admitted == [] and spool.holders == 1
    # WHEN the first group's files are measured (1 KiB each), while it still holds its place
    spool.observe([1024, 1024])
    waiter.join(5)
    # THEN the waiting group is sized from them (2 files x 1 KiB x 2) and runs beside the first, not after it
    assert len(admitted) == 1 and spool.holders == 2 and spool.used == 4 * 1024
    admitted[0].release()  # type: ignore[attr-defined]
    first.release()
    assert spool.holders == 0 and spool.used == 0


def test_a_waiting_group_gives_up_when_the_run_stops_instead_of_starting(pool, tmp_path):
    # GIVEN the spool fully held by another group, and a group that must wait for it
    spool = SpoolBudget(lambda: 100 * 1024)
    other = spool.hold("other", [90 * 1024], factor=1)
    group = _group("waiter", [20 * 1024])
    fetcher = FakeFetcher(_bodies(group, 20 * 1024))
    asked, stop = threading.Event(), threading.Event()

    def should_stop() -> bool:
        asked.set()  # called under the budget's lock: the waiter is about to wait
        return stop.is_set()

    results = []
    waiter = threading.Thread(target=lambda: results.append(
        process_group(group, _ctx(fetcher, MemoryStore(), pool, spool, tmp_path), should_stop=should_stop)))
    waiter.start()
    assert asked.wait(10)
    # WHEN the run is stopped and the other group then releases its room
    stop.set()
    other.release()
    waiter.join(10)
    # THEN the waiter reports itself not started (retryable) and fetched nothing
    (result,) = results
    assert result.status is GroupStatus.FAILED and result.retryable and "stopped while it waited" in result.error
    assert fetcher.calls == {} and spool.holders == 0


def test_enospc_while_downloading_is_a_retryable_disk_full_failure(pool, tmp_path):
    # GIVEN a fetcher whose write hits a full disk
    group = _group("g", [None, None])
    fetcher = FakeFetcher({group.sources[0].url: OSError(errno.ENOSPC, "No space left on device"),
                           group.sources[1].url: b"x"})
    # WHEN the group is processed
    result = process_group(group, _ctx(fetcher, MemoryStore(), pool, SpoolBudget(lambda: MIB), tmp_path))
    # THEN it fails as DiskFull (retryable), naming the spool
    assert result.status is GroupStatus.FAILED and result.retryable
    assert result.error.startswith("no space left on the spool disk")


def test_enospc_while_merging_fails_the_group_and_never_escapes(pool, tmp_path, monkeypatch):
    # GIVEN a disk that fills up while the merged output is written (no spool budget at all)
    group = _group("g", [None, None])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(group_output, "merge_streams", full)
    ctx = GroupContext(fetcher=FakeFetcher(_bodies(group, 100)), store=MemoryStore(), files=pool, clock=FakeClock())
    # WHEN the batch runs (this raised OSError out of run_groups before)
    (result,) = run_groups([group], ctx, group_workers=2)
    # THEN the group fails retryable with a classified reason
    assert result.status is GroupStatus.FAILED and result.retryable
    assert "no space left on the spool disk" in result.error


def test_classification_of_disk_errors():
    assert isinstance(classify_spool_error(OSError(errno.ENOSPC, "full"), None), DiskFull)
    assert isinstance(classify_spool_error(OSError(errno.EDQUOT, "quota"), None), DiskFull)
    other = OSError(errno.EIO, "io")
    assert classify_spool_error(other, None) is other
    spool = SpoolBudget(lambda: 10)
    hold = spool.hold("g", [None], factor=2)
    with pytest.raises(OSError) as caught:
        MeteredPart(_Sink(), hold).write(b"x" * 6)
    assert caught.value.errno == errno.ENOSPC
    assert isinstance(classify_spool_error(caught.value, hold), TooLargeForSpool)


def test_a_truncate_gives_back_what_a_failed_attempt_wrote():
    # GIVEN a metered file that a first attempt filled, then a retry rewound
    spool = SpoolBudget(lambda: 100)
    hold = spool.hold("g", [None], factor=2)
    part = MeteredPart(_Sink(), hold)
    part.write(b"x" * 40)
    part.seek(0)
    part.truncate()
    # THEN the retry's bytes are not counted on top of the first attempt's
    part.write(b"y" * 40)
    assert hold.written == 40
    part.settle(45)  # writes at offsets the meter did not see
    assert hold.written == 45 and spool.used == 90



def test_a_metered_spooled_file_reads_back_after_it_rolled_over_to_disk(tmp_path):
    import tempfile

    # GIVEN a metered in-memory spool file that a write pushes past its memory size (it moves to disk)
    hold = SpoolBudget(lambda: 1 << 20).hold("g", [None], factor=2)
    raw = tempfile.SpooledTemporaryFile(max_size=8, dir=tmp_path)
    part = MeteredPart(raw, hold)
    part.write(b"abc")
    part.write(b"defghijklmno")
    # WHEN it is rewound and read as the merge does
    part.flush()
    part.seek(0)
    # THEN the bytes come from the file on disk, and its name is the disk file's
    assert raw._rolled and part.seekable() and part.read() == b"abcdefghijklmno" and part.tell() == 15
    assert hold.written == 15 and isinstance(part.name, int | str)
    raw.close()

class _Sink:
    """A file-like sink in memory."""

    def __init__(self):
        import io

        self._buffer = io.BytesIO()

    def write(self, data):
        return self._buffer.write(data)

    def __getattr__(self, name):
        return getattr(self._buffer, name)


def test_the_worker_measures_its_spool_again_at_the_start_of_every_batch(pool, tmp_path):
    from fanfetch.app.worker import run_batch

    # GIVEN a warm worker whose /tmp has less room than at its last batch
    room = [100 * 1024]
    spool = SpoolBudget(lambda: room[0])
    ctx = _ctx(FakeFetcher({}), MemoryStore(), pool, spool, tmp_path)
    room[0] = 40 * 1024
    # WHEN the next batch starts
    run_batch([], ctx, groups_in_flight=2, deadline=None)
    # THEN it schedules against what is free now
    assert spool.total == 40 * 1024


def test_the_spool_cap_setting_is_validated():
    from fanfetch.errors import InputError
    from fanfetch.settings import Settings

    assert Settings.from_env({"FANFETCH_SPOOL_MAX_BYTES": "1048576"}).spool_max_bytes == MIB
    assert Settings.from_env({}).spool_max_bytes is None
    with pytest.raises(InputError, match="FANFETCH_SPOOL_MAX_BYTES='0' must be at least 1"):
        Settings.from_env({"FANFETCH_SPOOL_MAX_BYTES": "0"})

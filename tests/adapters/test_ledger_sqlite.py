"""The SQLite ledger beyond the shared contract: where it lives, WAL mode, several connections (as several
processes would open) on one file, and sqlite3 errors translated by result code."""

from __future__ import annotations

import random
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fanfetch.adapters.ledger_sqlite import SqliteLedger, default_ledger_path
from fanfetch.core.ledger import GroupRecord
from fanfetch.errors import PermanentLedgerError, RetryableLedgerError


def _ok(job: str, i: int) -> GroupRecord:
    return GroupRecord(job_id=job, group_id=f"g{i}", status="ok", key=f"out/{i}", files=1, bytes=i, finished_at=9.0)


def test_the_ledger_lives_under_dest_in_wal_mode_and_survives_reopening(tmp_path: Path) -> None:
    # GIVEN a ledger opened on a fresh DEST (its _jobs folder does not exist yet)
    path = default_ledger_path(str(tmp_path / "dest"))
    ledger = SqliteLedger(path)
    ledger.open_job("j", total_groups=2, total_files=2, results_location="r", now=1.0)
    ledger.record_group(_ok("j", 0))
    ledger.close()
    # THEN it is DEST/_jobs/ledger.sqlite, in WAL mode, and a new ledger on the file sees the progress
    assert Path(path) == tmp_path / "dest" / "_jobs" / "ledger.sqlite"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reopened = SqliteLedger(path)
    assert reopened.get_job("j").ok == 1
    assert reopened.record_group(_ok("j", 0)).counted is False
    assert reopened.record_group(_ok("j", 1)).job_finished is True


def test_separate_connections_on_one_file_count_exactly_and_finish_once(tmp_path: Path) -> None:
    # GIVEN four ledgers on the same file (as four processes of a local run would open), one job of 150
    # groups, every group delivered twice in random order
    path = default_ledger_path(str(tmp_path))
    ledgers = [SqliteLedger(path) for _ in range(4)]
    ledgers[0].open_job("j", total_groups=150, total_files=150, results_location="", now=1.0)
    deliveries = [_ok("j", i) for i in range(150)] * 2
    random.Random(3).shuffle(deliveries)
    start = threading.Barrier(4)

    def worker(k: int) -> list[tuple[bool, bool]]:
        start.wait()
        return [(o.counted, o.job_finished) for o in map(ledgers[k].record_group, deliveries[k::4])]

    # WHEN each records its share concurrently
    with ThreadPoolExecutor(4) as pool:
        outcomes = [o for share in pool.map(worker, range(4)) for o in share]
    # THEN 150 counted, one finished, and the totals are exact
    assert sum(counted for counted, _ in outcomes) == 150
    assert sum(finished for _, finished in outcomes) == 1
    job = ledgers[0].get_job("j")
    assert (job.ok, job.files, job.bytes) == (150, 150, sum(range(150)))


def test_separate_connections_upgrading_the_same_failed_groups_count_each_once(tmp_path: Path) -> None:
    # GIVEN a finished job of 40 failed groups, and four ledgers on its file (four local processes)
    path = default_ledger_path(str(tmp_path))
    ledgers = [SqliteLedger(path) for _ in range(4)]
    ledgers[0].open_job("j", total_groups=40, total_files=40, results_location="", now=1.0)
    for i in range(40):
        ledgers[0].record_group(GroupRecord(job_id="j", group_id=f"g{i}", status="failed", key=f"out/{i}",
                                            error="HTTP 503", finished_at=5.0))
    start = threading.Barrier(4)

    def worker(k: int) -> int:
        start.wait()
        return sum(ledgers[k].record_group(_ok("j", i)).upgraded for i in random.Random(k).sample(range(40), 40))

    # WHEN each re-runs every group successfully, concurrently
    with ThreadPoolExecutor(4) as pool:
        upgrades = sum(pool.map(worker, range(4)))
    # THEN each group was upgraded once and the job, still finished when it was, counts 40 ok
    assert upgrades == 40
    job = ledgers[0].get_job("j")
    assert (job.ok, job.failed, job.files, job.bytes, job.finished_at) == (40, 0, 40, sum(range(40)), 5.0)


def test_a_database_held_by_another_writer_is_a_retryable_error(tmp_path: Path) -> None:
    # GIVEN another connection holding the write lock longer than our busy timeout
    path = default_ledger_path(str(tmp_path))
    ledger = SqliteLedger(path, busy_timeout_s=0.01)
    ledger.open_job("j", total_groups=1, total_files=1, results_location="", now=1.0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        # THEN recording reports a retryable ledger error (a redelivery may succeed), not sqlite3's
        with pytest.raises(RetryableLedgerError, match="SQLITE_BUSY"):
            ledger.record_group(_ok("j", 0))
    finally:
        other.execute("ROLLBACK")
    # AND once the lock is released the verdict counts
    assert ledger.record_group(_ok("j", 0)).job_finished


def test_a_file_that_is_not_a_database_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not an SQLite database, just some bytes " * 100)
    with pytest.raises(PermanentLedgerError, match="SQLITE_NOTADB"):
        SqliteLedger(str(path))

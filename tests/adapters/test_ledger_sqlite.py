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


# --- local runs: each run of a job is its latest truth ---------------------------------------------


def _verdict(group: str, *, status: str = "ok", at: float, sha: str | None = "s1", etag: str = '"v1"',
             error: str | None = None, change: str | None = None, files: int = 2, size: int = 10) -> GroupRecord:
    from fanfetch.core.ledger import Validator

    return GroupRecord(job_id="j", group_id=group, status=status, key=f"out/{group}", files=files,
                       bytes=size if status == "ok" else 0, sha256=sha if status == "ok" else None, attempts=files,
                       error=error, started_at=at, finished_at=at + 1, change=change,
                       validators=(Validator(url=f"u/{group}", etag=etag),) if status == "ok" else ())


def test_a_later_runs_verdict_replaces_the_earlier_runs_and_moves_the_counters(tmp_path: Path) -> None:
    ledger = SqliteLedger(default_ledger_path(str(tmp_path)))
    # GIVEN a first run: a stored, b failed with a 404
    ledger.start_run("j", total_groups=2, total_files=4, results_location="r", now=1.0)
    assert ledger.record_latest(_verdict("a", at=2.0)).counted
    assert ledger.record_latest(_verdict("b", status="failed", at=2.0, error="HTTP 404")).counted
    assert ledger.finish_run("j", now=5.0).finished_at == 5.0
    # WHEN a second run rewrites a (new content, new ETag) and b fails again with another reason
    ledger.start_run("j", total_groups=2, total_files=4, results_location="r", now=10.0)
    assert ledger.get_job("j").finished_at is None and ledger.get_job("j").started_at == 10.0
    assert not ledger.record_latest(_verdict("a", at=11.0, sha="s2", etag='"v2"', change="changed", size=12)).counted
    ledger.record_latest(_verdict("b", status="failed", at=11.0, error="HTTP 410"))
    job = ledger.finish_run("j", now=15.0)
    # THEN the rows, the output's hash and validators and the job are the second run's, counted once
    rows = {g.group_id: g for g in ledger.list_groups("j")}
    assert (rows["a"].sha256, rows["a"].started_at, rows["a"].change) == ("s2", 11.0, "changed")
    assert rows["b"].error == "HTTP 410"
    sha, validators = ledger.last_validators("out/a")
    assert sha == "s2" and [v.etag for v in validators] == ['"v2"']
    assert (job.ok, job.failed, job.bytes, job.changed, job.started_at, job.finished_at) == (1, 1, 12, 1, 10.0, 15.0)


def test_a_later_failure_of_a_stored_group_keeps_what_is_known_about_its_output(tmp_path: Path) -> None:
    # GIVEN a stored group, then a refresh run in which the origin fails
    ledger = SqliteLedger(default_ledger_path(str(tmp_path)))
    ledger.start_run("j", total_groups=1, total_files=2, results_location="r", now=1.0)
    ledger.record_latest(_verdict("a", at=2.0))
    ledger.start_run("j", total_groups=1, total_files=2, results_location="r", now=10.0)
    ledger.record_latest(_verdict("a", status="failed", at=11.0, error="HTTP 503"))
    # THEN the group reads failed (this run's verdict) but the stored output's hash and validators stay
    job = ledger.finish_run("j", now=12.0)
    assert (job.ok, job.failed) == (0, 1)
    assert ledger.last_validators("out/a")[0] == "s1"
    # AND a plain re-run that finds the output stored makes it ok again, still with its validators
    ledger.start_run("j", total_groups=1, total_files=2, results_location="r", now=20.0)
    outcome = ledger.record_latest(_verdict("a", at=21.0, sha="s1", etag="", change=None), skipped=True)
    assert outcome.upgraded and (ledger.get_job("j").ok, ledger.get_job("j").failed) == (1, 0)
    assert [v.etag for v in ledger.last_validators("out/a")[1]] == ['"v1"']


def test_a_skip_of_a_recorded_group_changes_nothing_and_of_an_unrecorded_one_counts_it(tmp_path: Path) -> None:
    ledger = SqliteLedger(default_ledger_path(str(tmp_path)))
    ledger.start_run("j", total_groups=2, total_files=4, results_location="r", now=1.0)
    ledger.record_latest(_verdict("a", at=2.0))
    # GIVEN b was stored but never recorded (the run died in between): the job is 1 of 2
    assert ledger.finish_run("j", now=3.0).finished_at is None
    assert frozenset(ledger.ok_group_ids("j")) == frozenset({"a"})
    # WHEN a re-run finds both stored
    ledger.start_run("j", total_groups=2, total_files=4, results_location="r", now=10.0)
    assert not ledger.record_latest(_verdict("a", at=11.0, sha="s1", etag=""), skipped=True).counted
    assert ledger.record_latest(_verdict("b", at=11.0, sha="sb"), skipped=True).counted
    # THEN a keeps its first run's facts, b is counted, and the job is finished, 2 of 2
    rows = {g.group_id: g for g in ledger.list_groups("j")}
    assert rows["a"].started_at == 2.0 and ledger.last_validators("out/a")[1][0].etag == '"v1"'
    job = ledger.finish_run("j", now=12.0)
    assert (job.ok, job.failed, job.finished_at) == (2, 0, 12.0)
    assert ledger.last_validators("out/b")[0] == "sb"

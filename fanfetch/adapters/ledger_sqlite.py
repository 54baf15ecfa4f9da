"""The job ledger in one SQLite file under DEST (local runs): the DynamoDB ledger's semantics, in transactions.

Each verdict is one ``BEGIN IMMEDIATE`` transaction (insert-if-absent, or replace a "failed" with an "ok" +
counters + finish), so duplicates never count twice, an upgrade counts once, and exactly one caller finishes a
job, across threads and processes (WAL mode). A local run records through ``start_run`` / ``record_latest`` /
``finish_run`` instead: every run of a job is a later truth, so its verdicts replace the earlier runs'.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from fanfetch.adapters.ledger_sqlite_tables import (
    GROUP_COLUMNS,
    connect,
    count_verdict,
    group_from_row,
    insert_group,
    read_group,
    read_job,
    replace_group,
    unpack_validators,
)
from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome, Validator
from fanfetch.errors import JobNotOpen, LedgerError, PermanentLedgerError, RetryableLedgerError

__all__ = ["SqliteLedger", "default_ledger_path", "classify_sqlite_error"]

_BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's transaction before "busy"
# Primary result codes (https://www.sqlite.org/rescode.html) where another attempt may succeed.
_RETRYABLE_CODES = frozenset({5, 6, 10, 13, 15})  # BUSY, LOCKED, IOERR, FULL, PROTOCOL


def default_ledger_path(dest: str) -> str:
    """Where a local run keeps its ledger: ``DEST/_jobs/ledger.sqlite``."""
    return os.path.join(dest, "_jobs", "ledger.sqlite")


def classify_sqlite_error(exc: sqlite3.Error, what: str) -> LedgerError:
    """Translate an sqlite3 error by its result code: busy/locked/I-O/full may clear, the rest will not."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    if code is not None and code & 0xFF in _RETRYABLE_CODES:
        return RetryableLedgerError(f"{what}: {name}")
    return PermanentLedgerError(f"{what}: {name}")


class SqliteLedger:
    """Implements ``fanfetch.ports.Ledger`` in one SQLite file (created with its folder if missing).

    One connection per process, shared by threads under a lock (verdicts are tiny transactions);
    other processes on the same file wait up to ``busy_timeout_s`` for the write lock.
    """

    def __init__(self, path: str, *, busy_timeout_s: float = _BUSY_TIMEOUT_S, wall: Callable[[], float] = time.time):
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._wall = wall
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        with self._transaction("open the ledger", write=False):
            pass  # connect now (creating the file and schema), so a bad path fails here, not mid-run

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- Ledger ------------------------------------------------------------------------------------

    def open_job(
        self, job_id: str, *, total_groups: int, total_files: int, results_location: str, now: float,
        group_ids: Sequence[str] | None = None,
    ) -> JobRecord:
        with self._transaction(f"open job {job_id!r}") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, total_groups, total_files, remaining, started_at, "
                "results_location) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, total_groups, total_files, total_groups, now, results_location),
            )
            job = read_job(conn, job_id)
        assert job is not None
        return job

    def record_group(self, record: GroupRecord) -> RecordOutcome:
        what = f"record group {record.group_id!r} of job {record.job_id!r}"
        with self._transaction(what) as conn:
            if read_job(conn, record.job_id) is None:
                raise JobNotOpen(f"{what}: the ledger has no such job")
            counted = insert_group(conn, record)
            upgraded = False
            if counted:
                count_verdict(conn, record, None)
            elif record.status == "ok":
                # A redriven / re-run group that now succeeds replaces its "failed" verdict, once.
                old = read_group(conn, record.job_id, record.group_id)
                upgraded = old is not None and old.status == "failed"
                if upgraded:
                    replace_group(conn, record)
                    count_verdict(conn, record, old)
            # Tried after duplicates too (as in DynamoDB): a run that died between counting and
            # finishing gets the job finished by the redelivery.
            finished = conn.execute(
                "UPDATE jobs SET finished_at = ? WHERE job_id = ? AND remaining = 0 AND finished_at IS NULL",
                (record.finished_at or self._wall(), record.job_id),
            ).rowcount == 1
            job = read_job(conn, record.job_id)
        pending = not finished and job is not None and job.finished_at is not None and job.announced_at is None
        return RecordOutcome(counted=counted or upgraded, job_finished=finished, job=job, upgraded=upgraded,
                             announce_pending=pending)

    # --- local runs: the latest run of a job is the truth ------------------------------------------

    def start_run(
        self, job_id: str, *, total_groups: int, total_files: int, results_location: str, now: float
    ) -> JobRecord:
        """Open the job, or start another run of it: its start is this run's and it is running again."""
        with self._transaction(f"start a run of job {job_id!r}") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, total_groups, total_files, remaining, started_at, "
                "results_location) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, total_groups, total_files, total_groups, now, results_location),
            )
            conn.execute("UPDATE jobs SET started_at = ?, finished_at = NULL WHERE job_id = ?", (now, job_id))
            job = read_job(conn, job_id)
        assert job is not None
        return job

    def ok_group_ids(self, job_id: str, *, page_size: int = 10_000) -> Iterator[str]:
        """The groups of ``job_id`` recorded as stored (a re-run need not record their skips again), a page at a
        time (keyset pagination by group id): bounded memory at any size."""
        after = ""
        while True:
            with self._transaction(f"list stored groups of job {job_id!r}", write=False) as conn:
                rows = conn.execute("SELECT group_id FROM groups WHERE job_id = ? AND status = 'ok' AND group_id > ? "
                                    "ORDER BY group_id LIMIT ?", (job_id, after, page_size)).fetchall()
            yield from (str(row[0]) for row in rows)
            if len(rows) < page_size:
                return
            after = str(rows[-1][0])

    def record_latest(self, record: GroupRecord, *, skipped: bool = False) -> RecordOutcome:
        """Record this run's verdict for a group, replacing an earlier run's: status, timings, error, hash and
        validators (counters move by the difference). A ``skipped`` group (its output was already stored, so
        nothing was fetched) is counted when the ledger missed it (a crash between store and record) or had
        it failed, and leaves an earlier run's facts about a stored output alone."""
        what = f"record group {record.group_id!r} of job {record.job_id!r}"
        with self._transaction(what) as conn:
            if read_job(conn, record.job_id) is None:
                raise JobNotOpen(f"{what}: the ledger has no such job")
            old = read_group(conn, record.job_id, record.group_id)
            counted = upgraded = False
            if old is None:
                counted = insert_group(conn, record)
                count_verdict(conn, record, None, keep_output=skipped)
            elif not (skipped and old.status == "ok"):
                upgraded = old.status == "failed" and record.status == "ok"
                replace_group(conn, record)
                count_verdict(conn, record, old, keep_output=skipped)
            job = read_job(conn, record.job_id)
        return RecordOutcome(counted=counted or upgraded, job_finished=False, job=job, upgraded=upgraded)

    def finish_run(self, job_id: str, *, now: float) -> JobRecord | None:
        """The run is over: when every group has a verdict, the job finished now."""
        with self._transaction(f"finish a run of job {job_id!r}") as conn:
            conn.execute("UPDATE jobs SET finished_at = ? WHERE job_id = ? AND remaining = 0", (now, job_id))
            return read_job(conn, job_id)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._transaction(f"read job {job_id!r}", write=False) as conn:
            return read_job(conn, job_id)

    def list_groups(self, job_id: str, *, status: str | None = None) -> list[GroupRecord]:
        sql = f"SELECT {GROUP_COLUMNS} FROM groups WHERE job_id = ?"
        params: tuple[str, ...] = (job_id,)
        if status is not None:
            sql += " AND status = ?"
            params += (status,)
        with self._transaction(f"list groups of job {job_id!r}", write=False) as conn:
            rows = conn.execute(sql + " ORDER BY group_id", params).fetchall()
        return [group_from_row(row) for row in rows]

    def iter_groups(self, job_id: str, *, status: str | None = None, page_size: int = 1000) -> Iterator[GroupRecord]:
        """Pages of ``page_size`` by group id (keyset pagination), validators left out: bounded memory."""
        columns = GROUP_COLUMNS.replace("validators", "'[]'")
        after = ""
        while True:
            sql = f"SELECT {columns} FROM groups WHERE job_id = ? AND group_id > ?"
            params: tuple[object, ...] = (job_id, after)
            if status is not None:
                sql += " AND status = ?"
                params += (status,)
            with self._transaction(f"list groups of job {job_id!r}", write=False) as conn:
                rows = conn.execute(sql + " ORDER BY group_id LIMIT ?", (*params, page_size)).fetchall()
            yield from (group_from_row(row) for row in rows)
            if len(rows) < page_size:
                return
            after = str(rows[-1][1])

    def claim_announcement(self, job_id: str, *, now: float, lease_s: float) -> JobRecord | None:
        with self._transaction(f"claim the announcement of job {job_id!r}") as conn:
            claimed = conn.execute(
                "UPDATE jobs SET announce_until = ? WHERE job_id = ? AND finished_at IS NOT NULL "
                "AND announced_at IS NULL AND (announce_until IS NULL OR announce_until < ?)",
                (now + lease_s, job_id, now),
            ).rowcount == 1
            return read_job(conn, job_id) if claimed else None

    def mark_announced(self, job_id: str, *, now: float) -> None:
        with self._transaction(f"mark job {job_id!r} announced") as conn:
            conn.execute("UPDATE jobs SET announced_at = ?, announce_until = NULL WHERE job_id = ?", (now, job_id))

    def release_announcement(self, job_id: str) -> None:
        with self._transaction(f"release the announcement of job {job_id!r}") as conn:
            conn.execute("UPDATE jobs SET announce_until = NULL WHERE job_id = ? AND announced_at IS NULL",
                         (job_id,))

    def last_validators(self, key: str) -> tuple[str | None, tuple[Validator, ...]]:
        with self._transaction(f"read validators of {key!r}", write=False) as conn:
            row = conn.execute("SELECT sha256, validators FROM outputs WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None, ()
        return row[0], unpack_validators(row[1])

    # --- connection --------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, what: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction under the process lock; ``BEGIN IMMEDIATE`` takes the write lock up front,
        so two writers never both read "not counted yet" (no lost updates, no upgrade deadlocks)."""
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise classify_sqlite_error(exc, f"{what} ({self.path})") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise classify_sqlite_error(exc, f"{what} ({self.path})") from exc
                raise

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross a fork: a child process opens its own.
        if self._conn is None or self._pid != os.getpid():
            self._conn = connect(self.path, self._busy_timeout_s)
            self._pid = os.getpid()
        return self._conn

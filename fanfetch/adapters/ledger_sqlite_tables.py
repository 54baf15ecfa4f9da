"""The SQLite ledger's tables: the schema (and the columns later releases added to it), opening a connection
in WAL mode, and the statements on one job or group row with their codecs (rows ↔ ledger records).
"""

from __future__ import annotations

import json
import os
import sqlite3

from fanfetch.core.ledger import GroupRecord, JobRecord, Validator

__all__ = ["GROUP_COLUMNS", "connect", "insert_group", "replace_group", "read_group", "read_job", "count_verdict",
           "group_from_row", "unpack_validators"]

_MAX_ERROR_CHARS = 2000
_COUNTERS = ("ok", "failed", "files", "bytes", "changed", "unchanged")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    total_groups INTEGER NOT NULL,
    total_files INTEGER NOT NULL,
    ok INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    remaining INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    results_location TEXT NOT NULL DEFAULT '',
    announced_at REAL,
    announce_until REAL
);
CREATE TABLE IF NOT EXISTS groups (
    job_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    status TEXT NOT NULL,
    key TEXT NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT,
    attempts INTEGER NOT NULL,
    error TEXT,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    change TEXT,
    validators TEXT NOT NULL,
    missing TEXT,
    PRIMARY KEY (job_id, group_id)
);
CREATE TABLE IF NOT EXISTS outputs (
    key TEXT PRIMARY KEY,
    sha256 TEXT,
    validators TEXT NOT NULL,
    job_id TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""
_JOB_COLUMNS = (
    "job_id, total_groups, total_files, ok, failed, files, bytes, changed, unchanged, started_at, finished_at, "
    "results_location, announced_at"
)
# Columns added after the first release: a ledger file from then gains them when opened.
_ADDED_JOB_COLUMNS = (("announced_at", "REAL"), ("announce_until", "REAL"))
GROUP_COLUMNS = (
    "job_id, group_id, status, key, files, bytes, sha256, attempts, error, started_at, finished_at, change, "
    "validators, missing"
)


def connect(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False: the lock serializes.
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")  # readers (`fanfetch status`) never block the workers
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the process
    conn.executescript(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(groups)")}
    if "missing" not in columns:  # a ledger written before on_missing existed
        conn.execute("ALTER TABLE groups ADD COLUMN missing TEXT")
    present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    for name, kind in _ADDED_JOB_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
    return conn


def insert_group(conn: sqlite3.Connection, record: GroupRecord) -> bool:
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO groups ({GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _group_row(record),
    )
    return cursor.rowcount == 1


def replace_group(conn: sqlite3.Connection, record: GroupRecord) -> None:
    conn.execute(f"REPLACE INTO groups ({GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 _group_row(record))


def read_group(conn: sqlite3.Connection, job_id: str, group_id: str) -> GroupRecord | None:
    row = conn.execute(
        f"SELECT {GROUP_COLUMNS} FROM groups WHERE job_id = ? AND group_id = ?", (job_id, group_id)
    ).fetchone()
    return None if row is None else group_from_row(row)


def _group_row(record: GroupRecord) -> tuple[object, ...]:
    return (
        record.job_id,
        record.group_id,
        record.status,
        record.key,
        record.files,
        record.bytes,
        record.sha256,
        record.attempts,
        None if record.error is None else record.error[:_MAX_ERROR_CHARS],
        record.started_at,
        record.finished_at,
        record.change,
        _pack_validators(record.validators),
        json.dumps(list(record.missing)) if record.missing else None,
    )


def count_verdict(
    conn: sqlite3.Connection, record: GroupRecord, replaced: GroupRecord | None, *, keep_output: bool = False
) -> None:
    """Add ``record``'s share to its job's counters; for an upgrade, take the ``replaced`` verdict's out
    (``remaining`` then stays: the group was already done). An ok verdict becomes the output's latest
    hash and validators, unless ``keep_output`` (a skip: what is known about the output stands)."""
    new, old = _share(record), _share(replaced)
    conn.execute(
        "UPDATE jobs SET ok = ok + ?, failed = failed + ?, files = files + ?, bytes = bytes + ?, "
        "changed = changed + ?, unchanged = unchanged + ?, remaining = remaining - ? WHERE job_id = ?",
        (*(a - b for a, b in zip(new, old, strict=True)), int(replaced is None), record.job_id),
    )
    if record.status == "ok":
        conflict = "DO NOTHING" if keep_output else (
            "DO UPDATE SET sha256 = excluded.sha256, validators = excluded.validators, "
            "job_id = excluded.job_id, updated_at = excluded.updated_at")
        conn.execute(
            "INSERT INTO outputs (key, sha256, validators, job_id, updated_at) VALUES (?, ?, ?, ?, ?) "
            f"ON CONFLICT (key) {conflict}",
            (record.key, record.sha256, _pack_validators(record.validators), record.job_id, record.finished_at),
        )


def _share(record: GroupRecord | None) -> tuple[int, ...]:
    """A verdict's part of the job counters, in ``_COUNTERS`` order (all zeros for no verdict)."""
    if record is None:
        return (0,) * len(_COUNTERS)
    ok = record.status == "ok"
    return (int(ok), int(not ok), record.files, record.bytes, int(record.change in ("changed", "new")),
            int(record.change == "unchanged"))


def read_job(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    (job, total_groups, total_files, ok, failed, files, nbytes, changed, unchanged, started, finished, location,
     announced) = row
    return JobRecord(
        job_id=job,
        total_groups=total_groups,
        total_files=total_files,
        ok=ok,
        failed=failed,
        files=files,
        bytes=nbytes,
        changed=changed,
        unchanged=unchanged,
        started_at=started,
        finished_at=finished,
        results_location=location,
        announced_at=announced,
    )


def group_from_row(row: tuple[object, ...]) -> GroupRecord:
    (job, group, status, key, files, nbytes, sha256, attempts, error, started, finished, change, validators,
     missing) = row
    return GroupRecord(
        job_id=str(job),
        group_id=str(group),
        status=str(status),
        key=str(key),
        files=int(files),  # type: ignore[call-overload]
        bytes=int(nbytes),  # type: ignore[call-overload]
        sha256=None if sha256 is None else str(sha256),
        attempts=int(attempts),  # type: ignore[call-overload]
        error=None if error is None else str(error),
        started_at=float(started),  # type: ignore[arg-type]
        finished_at=float(finished),  # type: ignore[arg-type]
        change=None if change is None else str(change),
        validators=unpack_validators(str(validators)),
        missing=tuple(json.loads(str(missing))) if missing else (),
    )


def _pack_validators(validators: tuple[Validator, ...]) -> str:
    return json.dumps([[v.url, v.etag, v.last_modified] for v in validators], separators=(",", ":"))


def unpack_validators(text: str) -> tuple[Validator, ...]:
    return tuple(Validator(url=url, etag=etag, last_modified=modified) for url, etag, modified in json.loads(text))

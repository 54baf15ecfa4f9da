"""``fanfetch run``: one job on this machine, into a local folder or S3, resumable.

Resuming needs no state file: outputs are written atomically under deterministic keys, so an
output that exists is complete, and a second run skips it without a request.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from fanfetch.app.engine import run_groups
from fanfetch.app.jobs import results_key_for, verdict_from_result
from fanfetch.app.services import GroupContext
from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome
from fanfetch.core.manifest_stream import StreamedJob
from fanfetch.core.models import Group, GroupResult, Job
from fanfetch.errors import FanfetchError

__all__ = ["RunLedger", "RunSummary", "run_job"]

SHOWN_FAILURES = 10  # failures a summary names; the results manifest has them all


class RunLedger(Protocol):
    """A local run's ledger (SQLite under DEST): each run of a job is its latest truth."""

    def start_run(
        self, job_id: str, *, total_groups: int, total_files: int, results_location: str, now: float
    ) -> JobRecord: ...

    def ok_group_ids(self, job_id: str) -> Iterator[str]: ...

    def record_latest(self, record: GroupRecord, *, skipped: bool = False) -> RecordOutcome: ...

    def finish_run(self, job_id: str, *, now: float) -> JobRecord | None: ...


@dataclass(frozen=True)
class RunSummary:
    """What a run did, for the closing summary and the exit code: counts, not one result per group (a
    million-group run keeps its results in the results manifest only)."""

    job_id: str
    elapsed_s: float
    results_key: str
    ok: int = 0
    failed: int = 0  # groups that ran and failed (groups an interrupted run never started are ``not_started``)
    not_started: int = 0
    skipped: int = 0
    files: int = 0
    bytes: int = 0
    changed: int = 0
    unchanged: int = 0
    refreshed: bool = False  # some group has a refresh verdict (changed / new / unchanged)
    failures: tuple[tuple[str, str], ...] = ()  # the first SHOWN_FAILURES (group id, error), in finishing order
    interrupted: bool = False
    results_error: str | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.failed == 0 and self.not_started == 0 and not self.results_error else 1


@dataclass
class RunProgress:
    """Counters a progress display reads while the run goes on (updated from worker threads)."""

    total_groups: int
    total_files: int
    ok: int = 0
    failed: int = 0
    not_started: int = 0
    skipped: int = 0
    files: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, result: GroupResult) -> None:
        with self._lock:
            if result.ok:
                self.ok += 1
                self.skipped += result.skipped
                self.files += result.files
                self.bytes += 0 if result.skipped else result.bytes
            elif not result.started:
                self.not_started += 1
            else:
                self.failed += 1


class _Tally:
    """RunSummary's counts, added up as groups finish (from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(("ok", "failed", "not_started", "skipped", "files", "bytes", "changed",
                                     "unchanged"), 0)
        self.refreshed = False
        self.failures: list[tuple[str, str]] = []

    def add(self, result: GroupResult) -> None:
        with self._lock:
            counts = self.counts
            if result.change:
                self.refreshed = True
            if not result.started:
                counts["not_started"] += 1
                return
            if not result.ok:
                counts["failed"] += 1
                if len(self.failures) < SHOWN_FAILURES:
                    self.failures.append((result.group_id, result.error or ""))
                return
            counts["ok"] += 1
            counts["skipped"] += result.skipped
            if not result.skipped and result.change != "unchanged":
                counts["files"] += result.files
                counts["bytes"] += result.bytes
            counts["changed"] += result.change in ("changed", "new")
            counts["unchanged"] += result.change == "unchanged"


class _ResultsSpool:
    """The results manifest, one line per group, in manifest order, without holding the lines: each is
    appended to a temp file as its group finishes, its offset noted by the group's position (8 bytes a
    group); ``write_ordered`` then copies them out in order."""

    def __init__(self, groups: int, *, folder: str | None):
        self._lock = threading.Lock()
        self._file = tempfile.TemporaryFile(prefix="fanfetch-results-", dir=folder)
        self._offsets = array("q", [-1]) * groups
        self._end = 0

    def add(self, index: int, line: bytes) -> None:
        with self._lock:  # appends only (lines are read back with pread, which leaves the position alone)
            self._file.write(line)
            if index < len(self._offsets):
                self._offsets[index] = self._end
            self._end += len(line)

    def write_ordered(self, path: str) -> str:
        """Write the lines in manifest order to ``path``; return their sha256."""
        digest = hashlib.sha256()
        self._file.flush()
        fd = self._file.fileno()
        with open(path, "wb") as out:
            for offset in self._offsets:
                if offset < 0:
                    continue
                line = _read_line(fd, offset)
                digest.update(line)
                out.write(line)
        return digest.hexdigest()

    def close(self) -> None:
        self._file.close()


def _read_line(fd: int, offset: int) -> bytes:
    chunk = os.pread(fd, 4096, offset)
    end = chunk.find(b"\n")
    while end < 0:  # a long line (many missing URLs, a long error)
        more = os.pread(fd, 65536, offset + len(chunk))
        if not more:
            return chunk
        chunk += more
        end = chunk.find(b"\n")
    return chunk[: end + 1]


class _StoredFilter:
    """The groups the ledger has stored, as a sorted array of 64-bit hashes of their ids (8 bytes a group, not a
    set of strings). A hash match may, once in ~2^64 / groups, be a different group: that group's skip is then
    not re-recorded (its output is stored; the ledger keeps its earlier verdict)."""

    def __init__(self, ids: Iterable[str]):
        self._hashes = array("q", sorted(hash(group_id) for group_id in ids))

    def __contains__(self, group_id: str) -> bool:
        wanted = hash(group_id)
        at = bisect_left(self._hashes, wanted)
        return at < len(self._hashes) and self._hashes[at] == wanted


def run_job(
    job: Job | StreamedJob,
    ctx: GroupContext,
    *,
    group_workers: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_result: Callable[[GroupResult], None] = lambda result: None,
    refresh: bool = False,
    ledger: RunLedger | None = None,
) -> RunSummary:
    """Process every group of ``job`` and store the results manifest beside the outputs.

    Groups are read from the job as the engine takes them (a streamed job re-reads its manifest: nothing
    per group is held but a results-manifest offset). With ``refresh`` existing outputs are re-checked
    against the origin (see ``process_group``). With a ``ledger`` (SQLite under the destination) the job and
    each group's verdict are recorded, this run's replacing earlier runs' (validators, hashes, timings,
    errors), which gives ``fanfetch report`` its timeline and the next ``--refresh`` its validators. A group
    found stored is recorded only when the ledger does not have it stored (a run that died between storing
    and recording it).
    """
    if isinstance(job, Job):
        job = StreamedJob.from_job(job)
    started = time.monotonic()
    key = results_key_for(job.job_id)
    ledger_errors: list[str] = []
    recorded_ok = _StoredFilter(())
    if ledger is not None:
        ledger.start_run(job.job_id, total_groups=job.group_count, total_files=job.file_count,
                         results_location=key, now=time.time())
        recorded_ok = _StoredFilter(ledger.ok_group_ids(job.job_id))
    tally = _Tally()
    spool = _ResultsSpool(job.group_count, folder=ctx.spool_dir)
    positions: dict[str, int] = {}  # group id -> manifest position, for the groups in flight only
    positions_lock = threading.Lock()

    def numbered() -> Iterator[Group]:
        for index, group in enumerate(job.iter_groups()):
            with positions_lock:
                positions[group.group_id] = index
            yield group

    def record(result: GroupResult) -> None:
        skipped = result.ok and result.skipped
        # a group never started has no verdict: the ledger keeps it pending, and the next run does it
        if ledger is not None and result.started and not (skipped and result.group_id in recorded_ok):
            try:
                ledger.record_latest(verdict_from_result(job.job_id, result, started_at=result.started_at,
                                                         finished_at=result.finished_at, change=result.change),
                                     skipped=skipped)
            except FanfetchError as exc:
                ledger_errors.append(str(exc))
        with positions_lock:
            index = positions.pop(result.group_id, -1)
        spool.add(index, (json.dumps(_record(result), ensure_ascii=False) + "\n").encode("utf-8"))
        tally.add(result)
        on_result(result)

    error = None
    try:
        run_groups(numbered(), ctx, group_workers=group_workers, should_stop=should_stop, on_result=record,
                   keep_file_results=False, refresh=refresh, keep_results=False)
        error = _store_results(spool, ctx, key)
    finally:
        spool.close()
    if ledger is not None:  # every group has a verdict (an interrupted run's unstarted ones failed)
        try:
            ledger.finish_run(job.job_id, now=time.time())
        except FanfetchError as exc:
            ledger_errors.append(str(exc))
    if ledger_errors and error is None:
        error = f"{len(ledger_errors)} verdicts could not be recorded in the ledger; first: {ledger_errors[0]}"
    return RunSummary(
        job_id=job.job_id,
        elapsed_s=time.monotonic() - started,
        results_key=key,
        **tally.counts,
        refreshed=tally.refreshed,
        failures=tuple(tally.failures),
        interrupted=should_stop(),
        results_error=error,
    )


def _store_results(spool: _ResultsSpool, ctx: GroupContext, key: str) -> str | None:
    """Store the results manifest (a temp file the store moves or uploads); the error to report, or None."""
    fd, path = tempfile.mkstemp(prefix="fanfetch-results-", suffix=".jsonl", dir=ctx.spool_dir)
    os.close(fd)
    try:
        sha256 = spool.write_ordered(path)
        ctx.store.put_file(key, path, sha256=sha256, overwrite=True)
    except FanfetchError as exc:
        return f"could not store the results manifest: {exc}"
    except OSError as exc:
        return f"could not store the results manifest: {exc.strerror or exc}"
    finally:
        if os.path.lexists(path):
            os.unlink(path)
    return None


def _record(result: GroupResult) -> dict[str, object]:
    """A results line; a group the run never started says so (``not_started``) instead of ``failed``."""
    record = result.to_record()
    if not result.started:
        record["status"] = "not_started"
    return record

"""``fanfetch run``: one job on this machine, into a local folder or S3, resumable.

Resuming needs no state file: outputs are written atomically under deterministic keys, so an
output that exists is complete, and a second run skips it without a request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome
from fanfetch.core.models import GroupResult, Job
from fanfetch.engine import run_groups
from fanfetch.errors import FanfetchError
from fanfetch.jobs import results_key_for, verdict_from_result
from fanfetch.services import GroupContext

__all__ = ["RunLedger", "RunSummary", "run_job", "results_key"]


class RunLedger(Protocol):
    """A local run's ledger (SQLite under DEST): each run of a job is its latest truth."""

    def start_run(
        self, job_id: str, *, total_groups: int, total_files: int, results_location: str, now: float
    ) -> JobRecord: ...

    def ok_groups(self, job_id: str) -> frozenset[str]: ...

    def record_latest(self, record: GroupRecord, *, skipped: bool = False) -> RecordOutcome: ...

    def finish_run(self, job_id: str, *, now: float) -> JobRecord | None: ...


def results_key(job_id: str) -> str:
    return results_key_for(job_id)


@dataclass(frozen=True)
class RunSummary:
    """What a run did, for the closing summary and the exit code."""

    job_id: str
    results: tuple[GroupResult, ...]
    elapsed_s: float
    results_key: str
    interrupted: bool = False
    results_error: str | None = None

    @property
    def ok(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        """Groups that ran and failed (groups an interrupted run never started are ``not_started``)."""
        return sum(1 for r in self.results if not r.ok and r.started)

    @property
    def not_started(self) -> int:
        return sum(1 for r in self.results if not r.started)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.results if r.skipped)

    @property
    def files(self) -> int:
        return sum(r.files for r in self.results if r.ok and not r.skipped and r.change != "unchanged")

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.results if r.ok and not r.skipped and r.change != "unchanged")

    @property
    def changed(self) -> int:
        return sum(1 for r in self.results if r.ok and r.change in ("changed", "new"))

    @property
    def unchanged(self) -> int:
        return sum(1 for r in self.results if r.ok and r.change == "unchanged")

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


def run_job(
    job: Job,
    ctx: GroupContext,
    *,
    group_workers: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_result: Callable[[GroupResult], None] = lambda result: None,
    refresh: bool = False,
    ledger: RunLedger | None = None,
) -> RunSummary:
    """Process every group of ``job`` and store the results manifest beside the outputs.

    With ``refresh`` existing outputs are re-checked against the origin (see ``process_group``).
    With a ``ledger`` (SQLite under the destination) the job and each group's verdict are recorded, this
    run's replacing earlier runs' (validators, hashes, timings, errors), which gives ``fanfetch report``
    its timeline and the next ``--refresh`` its validators. A group found stored is recorded only when the
    ledger does not have it stored (a run that died between storing and recording it).
    """
    started = time.monotonic()
    ledger_errors: list[str] = []
    recorded_ok: frozenset[str] = frozenset()
    if ledger is not None:
        ledger.start_run(job.job_id, total_groups=len(job.groups), total_files=job.file_count,
                         results_location=results_key(job.job_id), now=time.time())
        recorded_ok = ledger.ok_groups(job.job_id)

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
        on_result(result)

    results = run_groups(job.groups, ctx, group_workers=group_workers, should_stop=should_stop, on_result=record,
                         keep_file_results=False, refresh=refresh)
    lines = "".join(json.dumps(_record(r), ensure_ascii=False) + "\n" for r in results)
    key = results_key(job.job_id)
    error = None
    try:
        ctx.store.put_bytes(key, lines.encode("utf-8"), content_type="application/x-ndjson")
    except FanfetchError as exc:
        error = f"could not store the results manifest: {exc}"
    if ledger is not None:  # every group has a verdict (an interrupted run's unstarted ones failed)
        try:
            ledger.finish_run(job.job_id, now=time.time())
        except FanfetchError as exc:
            ledger_errors.append(str(exc))
    if ledger_errors and error is None:
        error = f"{len(ledger_errors)} verdicts could not be recorded in the ledger; first: {ledger_errors[0]}"
    return RunSummary(
        job_id=job.job_id,
        results=tuple(results),
        elapsed_s=time.monotonic() - started,
        results_key=key,
        interrupted=should_stop(),
        results_error=error,
    )


def _record(result: GroupResult) -> dict[str, object]:
    """A results line; a group the run never started says so (``not_started``) instead of ``failed``."""
    record = result.to_record()
    if not result.started:
        record["status"] = "not_started"
    return record

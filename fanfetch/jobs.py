"""Job bookkeeping services: record a group's verdict in the ledger and, for the one call that finishes
the job, write the results manifest (like Step Functions' ResultWriter) and announce "job finished"; a later
"ok" that upgrades a failed group of a finished job rewrites the manifest and summary (no second event).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable

from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome, Validator
from fanfetch.core.models import GroupResult
from fanfetch.ports import JobEvents, Ledger, ObjectStore

__all__ = [
    "finish_job",
    "write_results",
    "settle_outcome",
    "record_verdict",
    "verdict_from_result",
    "render_results",
    "results_key_for",
    "summary_key_for",
]


def results_key_for(job_id: str) -> str:
    """The store key of a job's results manifest: ``_jobs/<job>/results.jsonl``."""
    return f"_jobs/{job_id}/results.jsonl"


def summary_key_for(results_key: str) -> str:
    """``summary.json`` next to the results manifest."""
    return posixpath.join(posixpath.dirname(results_key), "summary.json")


def verdict_from_result(
    job_id: str, result: GroupResult, *, started_at: float, finished_at: float, change: str | None = None
) -> GroupRecord:
    """The ledger record of a group's outcome; the files' ETag / Last-Modified become its validators."""
    validators = tuple(
        Validator(url=f.url, etag=f.etag, last_modified=f.last_modified)
        for f in result.file_results
        if f.etag is not None or f.last_modified is not None
    )
    return GroupRecord(
        job_id=job_id,
        group_id=result.group_id,
        status=result.status.value,
        key=result.key,
        files=result.files,
        bytes=result.bytes,
        sha256=result.sha256,
        attempts=result.attempts,
        error=result.error,
        started_at=started_at,
        finished_at=finished_at,
        change=change,
        validators=validators,
        missing=result.missing,
    )


def render_results(groups: Iterable[GroupRecord]) -> bytes:
    """The results manifest: one JSON line per group (successes and failures)."""
    lines = (
        json.dumps(
            {
                "group": g.group_id,
                "status": g.status,
                "key": g.key,
                "files": g.files,
                "bytes": g.bytes,
                "sha256": g.sha256,
                "attempts": g.attempts,
                "error": g.error,
                "change": g.change,
            } | ({"missing": list(g.missing)} if g.missing else {}),  # on_missing=skip left these out
            separators=(",", ":"),
        )
        for g in groups
    )
    return "".join(line + "\n" for line in lines).encode()


def write_results(job: JobRecord, *, ledger: Ledger, store: ObjectStore, results_key: str | None = None) -> str:
    """Write (or overwrite) ``results.jsonl`` from the ledger's groups and ``summary.json`` from ``job``;
    return the results location (``job.results_location``, else the results key). Idempotent."""
    key = results_key or results_key_for(job.job_id)
    location = job.results_location or key
    store.put_bytes(key, render_results(ledger.list_groups(job.job_id)), content_type="application/x-ndjson")
    summary = json.dumps(job.to_summary(results_location=location), indent=2) + "\n"
    store.put_bytes(summary_key_for(key), summary.encode(), content_type="application/json")
    return location


def finish_job(
    job: JobRecord, *, ledger: Ledger, store: ObjectStore, events: JobEvents, results_key: str | None = None
) -> None:
    """Write ``results.jsonl`` and ``summary.json``, then publish "job finished".

    Call it only for the ``RecordOutcome`` whose ``job_finished`` is true (exactly one per job). Every
    step is idempotent, so an operator may run it again for a job whose announcement failed. The event
    is published last: whoever receives it can read the manifest it points to.
    """
    location = write_results(job, ledger=ledger, store=store, results_key=results_key)
    events.job_finished(job, results_location=location)


def settle_outcome(
    outcome: RecordOutcome,
    *,
    ledger: Ledger,
    store: ObjectStore,
    events: JobEvents,
    results_key: str | None = None,
) -> None:
    """Do what a recorded verdict calls for: ``finish_job`` if it finished the job; ``write_results`` if it
    upgraded a failed group of an already finished job (the manifest and summary said "failed"; the job
    was announced already, so no second event). Otherwise nothing: the finishing call writes everything.
    """
    job = outcome.job
    if job is None:
        return
    if outcome.job_finished:
        finish_job(job, ledger=ledger, store=store, events=events, results_key=results_key)
    elif outcome.upgraded and job.finished_at is not None:
        write_results(job, ledger=ledger, store=store, results_key=results_key)


def record_verdict(
    ledger: Ledger,
    record: GroupRecord,
    *,
    store: ObjectStore,
    events: JobEvents,
    results_key: str | None = None,
) -> RecordOutcome:
    """Record a group's final verdict, then ``settle_outcome``: finish the job if this verdict finished it,
    or rewrite its results if it upgraded a failed group of a finished job.

    Errors from finishing propagate (``StoreError`` / ``PublishError`` / ``LedgerError``). The verdict
    stays counted and the job stays finished in the ledger, so a redelivery neither counts it again nor
    finishes the job again: the announcement is then missing until ``finish_job`` is run for the job
    (its steps are idempotent). The event adapter retries rejected entries to keep that window small.
    """
    outcome = ledger.record_group(record)
    settle_outcome(outcome, ledger=ledger, store=store, events=events, results_key=results_key)
    return outcome

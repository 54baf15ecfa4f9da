"""Job bookkeeping services: record a group's verdict in the ledger and, for the call that finishes the job
(or a later one, if that finisher died), stream the results manifest, write the summary, announce "job finished"
and only then mark the job announced; an upgrade of a finished job rewrites manifest and summary (no new event).
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import tempfile
import time
from collections.abc import Callable, Iterable

from fanfetch.core.bookkeeping import job_dir_name
from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome, Validator
from fanfetch.core.models import GroupResult
from fanfetch.core.redact import redact_url
from fanfetch.errors import FinishDeferred, LedgerError
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
    "ANNOUNCE_LEASE_S",
    "MIN_FINISH_S",
]

ANNOUNCE_LEASE_S = 900.0  # a claim on announcing outlives the longest Lambda run (then anyone may take over)
MIN_FINISH_S = 5.0  # with less time left, a finisher leaves the finish to the next delivery
_log = logging.getLogger("fanfetch.app.jobs")


def results_key_for(job_id: str) -> str:
    """The store key of a job's results manifest: ``_jobs/<job>/results.jsonl`` (a valid job id stands as
    it is; anything else is encoded, so it cannot name a path of its own)."""
    return f"_jobs/{job_dir_name(job_id)}/results.jsonl"


def summary_key_for(results_key: str) -> str:
    """``summary.json`` next to the results manifest."""
    return posixpath.join(posixpath.dirname(results_key), "summary.json")


def verdict_from_result(
    job_id: str, result: GroupResult, *, started_at: float, finished_at: float, change: str | None = None
) -> GroupRecord:
    """The ledger record of a group's outcome; the files' ETag / Last-Modified become its validators."""
    validators = tuple(
        Validator(url=redact_url(f.url), etag=f.etag, last_modified=f.last_modified)  # matched redacted
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


def render_result_line(g: GroupRecord) -> str:
    """One group's line of the results manifest."""
    return json.dumps(
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
    ) + "\n"


def render_results(groups: Iterable[GroupRecord]) -> bytes:
    """The results manifest: one JSON line per group (successes and failures)."""
    return "".join(render_result_line(g) for g in groups).encode()


def write_results(job: JobRecord, *, ledger: Ledger, store: ObjectStore, results_key: str | None = None) -> str:
    """Write (or overwrite) ``results.jsonl`` from the ledger's groups and ``summary.json`` from ``job``;
    return the results location (``job.results_location``, else the results key). Idempotent.

    The manifest is streamed: groups are read page by page (no validators) into a temporary file that the
    store uploads (S3: multipart for a big one), so memory stays flat however many groups the job has.
    """
    key = results_key or results_key_for(job.job_id)
    location = job.results_location or key
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile("w+b", prefix="fanfetch-results-", suffix=".jsonl") as spool:
        for group in ledger.iter_groups(job.job_id):
            line = render_result_line(group).encode()
            digest.update(line)
            spool.write(line)
        spool.flush()
        store.put_file(key, spool.name, sha256=digest.hexdigest(), overwrite=True)
    summary = json.dumps(job.to_summary(results_location=location), indent=2) + "\n"
    store.put_bytes(summary_key_for(key), summary.encode(), content_type="application/json")
    return location


def finish_job(
    job: JobRecord, *, ledger: Ledger, store: ObjectStore, events: JobEvents, results_key: str | None = None,
    now: Callable[[], float] = time.time,
) -> None:
    """Write ``results.jsonl`` and ``summary.json``, publish "job finished", then mark the job announced.

    Every step is idempotent (the event carries the job id as ``idempotency_key``), so it may run again for
    a job whose finisher died midway. The event is published after the files: whoever receives it can read
    the manifest it points to; ``announced_at`` is set last, so a crash before it leaves the job to be
    announced again rather than never.
    """
    location = write_results(job, ledger=ledger, store=store, results_key=results_key)
    events.job_finished(job, results_location=location)
    ledger.mark_announced(job.job_id, now=now())


def settle_outcome(
    outcome: RecordOutcome,
    *,
    ledger: Ledger,
    store: ObjectStore,
    events: JobEvents,
    results_key: str | None = None,
    time_left_s: Callable[[], float] | None = None,
    now: Callable[[], float] = time.time,
) -> None:
    """Do what a recorded verdict calls for: finish (and announce) the job if this verdict finished it, or if
    it finds the job finished but unannounced (its finisher died); ``write_results`` if it upgraded a failed
    group of an already announced job (no second event). Otherwise nothing.

    The announcement is claimed first (one holder at a time, for at most the time this caller has left); if
    writing or publishing fails the claim is given back and the error raised: the caller should let its
    message come back, and that delivery completes the finish. With ``time_left_s`` below ``MIN_FINISH_S``
    nothing is started: ``FinishDeferred`` (retryable) says so.
    """
    job = outcome.job
    if job is None:
        return
    if outcome.job_finished or outcome.announce_pending:
        left = None if time_left_s is None else time_left_s()
        if left is not None and left < MIN_FINISH_S:
            _log.warning("finish of job %s deferred: %.1f s left; the next delivery (or fanfetch finish) "
                         "completes it", job.job_id, left)
            raise FinishDeferred(f"job {job.job_id}: finish deferred, only {left:.1f} s left")
        lease = ANNOUNCE_LEASE_S if left is None else min(ANNOUNCE_LEASE_S, left + MIN_FINISH_S)
        claimed = ledger.claim_announcement(job.job_id, now=now(), lease_s=lease)
        if claimed is None:  # announced already, or another caller is announcing it right now
            return
        try:
            finish_job(claimed, ledger=ledger, store=store, events=events, results_key=results_key, now=now)
        except BaseException:
            try:
                ledger.release_announcement(job.job_id)
            except LedgerError:  # the claim then simply expires
                _log.warning("job %s: could not release the announcement claim", job.job_id)
            raise
    elif outcome.upgraded and job.finished_at is not None:
        write_results(job, ledger=ledger, store=store, results_key=results_key)


def record_verdict(
    ledger: Ledger,
    record: GroupRecord,
    *,
    store: ObjectStore,
    events: JobEvents,
    results_key: str | None = None,
    time_left_s: Callable[[], float] | None = None,
) -> RecordOutcome:
    """Record a group's final verdict, then ``settle_outcome``: finish the job if this verdict finished it
    (or completes a finish that died), or rewrite its results if it upgraded a failed group of a finished job.

    Errors from finishing propagate (``StoreError`` / ``PublishError`` / ``LedgerError`` / ``FinishDeferred``).
    The verdict stays counted and the job finished in the ledger but not announced: a redelivery of any of
    the job's messages sees ``announce_pending`` and completes it (or ``fanfetch finish`` does).
    """
    outcome = ledger.record_group(record)
    settle_outcome(outcome, ledger=ledger, store=store, events=events, results_key=results_key,
                   time_left_s=time_left_s)
    return outcome

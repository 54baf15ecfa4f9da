"""Operations on a deployed stack, through ports: submit a manifest, read a job's progress and
failures from the ledger, move dead letters back to the work queue.

The CLI (``fanfetch.cli.ops``) composes the real adapters; tests pass fakes or moto-backed ones.
"""

from __future__ import annotations

import os
import posixpath
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fanfetch.core.ledger import GroupRecord, JobRecord
from fanfetch.core.manifest import detect_format
from fanfetch.core.models import Job, MergeMode
from fanfetch.errors import FanfetchError, InputError, ManifestError
from fanfetch.ports import InvocationOutcomeUnknown, Invoker, JobEvents, Ledger, ObjectStore

__all__ = [
    "SubmitResult", "submit_manifest", "manifest_prefix", "UnknownJob", "JobProgress", "read_progress",
    "list_failures", "watch_progress", "announce_job",
]

# --- submit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitResult:
    """What ``fanfetch submit`` did: where the manifest went and what the producer answered."""

    job_id: str
    groups: int
    messages: int
    manifest_uri: str
    uploaded: tuple[str, ...]  # keys written to the bucket
    producer_response: Mapping[str, Any]


def manifest_prefix(job_id: str) -> str:
    return f"_manifests/{job_id}/"


def submit_manifest(
    job: Job,
    location: str,
    *,
    merge: MergeMode,
    bucket: str,
    producer_function: str,
    store: ObjectStore,
    invoker: Invoker,
) -> SubmitResult:
    """Upload the manifest at ``location`` (already validated into ``job`` with ``load_job``, the loader of
    ``fanfetch run``) and a job spec's table to ``store`` (the stack's bucket, no prefix) under
    ``_manifests/<job_id>/``, then run the producer on it synchronously, once.

    A manifest already in S3 (``s3://…``) is handed to the producer where it is. Raises ManifestError
    before anything is uploaded when a spec's table lies outside its folder; InvocationFailed when the
    producer fails; InvocationOutcomeUnknown (naming the job to follow) when its answer never came.
    """
    uploaded: list[str] = []
    if location.startswith("s3://"):
        manifest_uri = location
    else:
        prefix = manifest_prefix(job.job_id)
        for relative, data in _manifest_files(location):
            key = prefix + relative
            store.put_bytes(key, data, content_type="text/plain; charset=utf-8")
            uploaded.append(key)
        manifest_uri = f"s3://{bucket}/{uploaded[0]}"
    try:  # exactly once: the invoker never retries (a retried invoke would enqueue the whole job again)
        response = invoker.invoke(producer_function, {"manifest": manifest_uri, "merge": merge.value})
    except InvocationOutcomeUnknown as exc:
        raise InvocationOutcomeUnknown(exc.function_name, exc.reason, exc.waited_s, job_id=job.job_id) from exc
    try:
        return SubmitResult(job_id=str(response["job_id"]), groups=int(response["groups"]),
                            messages=int(response["messages"]), manifest_uri=manifest_uri,
                            uploaded=tuple(uploaded), producer_response=response)
    except (KeyError, TypeError, ValueError) as exc:
        raise FanfetchError(f"{producer_function}: unexpected answer {response!r}") from exc


def _manifest_files(path: str) -> list[tuple[str, bytes]]:
    """The manifest (first) and, for a job spec, its table file, as (key relative to the prefix, bytes).

    The producer resolves a spec's ``table.path`` relative to the spec's S3 folder, so the table is
    uploaded at that same relative place; a path leaving the folder is refused (it would land outside
    this job's prefix, where another job's file could be).
    """
    data = _read(path)
    files = [(os.path.basename(path), data)]
    if detect_format(data, source=path) != "spec":
        return files
    table = tomllib.loads(data.decode("utf-8-sig")).get("table", {})
    relative = table.get("path") if isinstance(table, dict) else None
    if not isinstance(relative, str):
        return files
    normal = posixpath.normpath(relative.replace(os.sep, "/"))
    if normal.startswith(("../", "/")) or normal == "..":
        raise ManifestError(path, "fanfetch submit uploads the table beside the spec: give a path inside the "
                            "spec's folder", field="table.path")
    files.append((normal, _read(os.path.join(os.path.dirname(os.path.abspath(path)), relative))))
    return files


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:  # load_job has read it already: only a race gets here, but say which file
        raise ManifestError(path, f"cannot read: {exc.strerror or type(exc).__name__}") from None


# --- status and failures -----------------------------------------------------------------------


class UnknownJob(InputError):
    """The ledger has no such job."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(f"job {job_id!r} is not in the ledger (submitted to another stack, or mistyped?)")


@dataclass(frozen=True)
class JobProgress:
    """A job's progress at one moment, with rates over its run so far."""

    job: JobRecord
    elapsed_s: float
    groups_per_s: float
    bytes_per_s: float
    eta_s: float | None  # None: finished, or no rate yet
    queued: int | None = None  # messages in the stack's work queue (any job's), None: not looked at

    @property
    def finished(self) -> bool:
        return self.job.finished

    @property
    def announced(self) -> bool:
        """Results manifest, summary and "Job Finished" are all out."""
        return self.job.announced_at is not None

    @property
    def never_arrived(self) -> int | None:
        """Groups without a verdict while the work queue is empty: no message of theirs is left to deliver, so
        the producer never sent them (it stopped part-way). None when unknown or the job is finished."""
        if self.finished or self.queued != 0:
            return None
        return self.job.total_groups - self.job.done

    def notes(self) -> list[str]:
        """What an operator should know beyond the counts."""
        j, notes = self.job, []
        if self.finished and not self.announced:
            notes.append('finished but not yet announced: results manifest, summary or "Job Finished" not written; '
                         f"a redelivery completes it, or run `fanfetch finish {j.job_id}`")
        if self.never_arrived:
            notes.append(f"{self.never_arrived:,} groups have no verdict and the work queue is empty: unless the "
                         "producer is still sending, they never arrived (it stopped part-way); submit the same "
                         "manifest again: groups already done are only counted, the missing ones finish the job")
        return notes

    @property
    def state(self) -> str:
        if not self.finished:
            return "running"
        return "finished with failures" if self.job.failed else "finished"

    def to_dict(self) -> dict[str, object]:
        j = self.job
        return {
            "job_id": j.job_id, "state": self.state, "total_groups": j.total_groups, "ok": j.ok,
            "failed": j.failed, "done": j.done, "total_files": j.total_files, "files": j.files, "bytes": j.bytes,
            "changed": j.changed, "unchanged": j.unchanged, "started_at": j.started_at, "finished_at": j.finished_at,
            "elapsed_s": round(self.elapsed_s, 3), "groups_per_s": round(self.groups_per_s, 3),
            "bytes_per_s": round(self.bytes_per_s, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "results_location": j.results_location, "announced_at": j.announced_at,
            "queued": self.queued, "never_arrived": self.never_arrived, "notes": self.notes(),
        }


def read_progress(ledger: Ledger, job_id: str, *, now: float, queued: int | None = None) -> JobProgress:
    """``job_id``'s progress; ``now`` is epoch seconds (the ledger's timestamps are); ``queued``: messages in
    the work queue (tells groups never enqueued from groups still waiting). Raises UnknownJob."""
    job = ledger.get_job(job_id)
    if job is None:
        raise UnknownJob(job_id)
    end = job.finished_at if job.finished_at is not None else now
    elapsed = max(0.0, end - job.started_at) if job.started_at else 0.0
    groups_per_s = job.done / elapsed if elapsed > 0 else 0.0
    bytes_per_s = job.bytes / elapsed if elapsed > 0 else 0.0
    remaining = job.total_groups - job.done
    eta = remaining / groups_per_s if not job.finished and groups_per_s > 0 else None
    return JobProgress(job=job, elapsed_s=elapsed, groups_per_s=groups_per_s, bytes_per_s=bytes_per_s, eta_s=eta,
                       queued=queued)


def list_failures(ledger: Ledger, job_id: str) -> tuple[JobRecord, list[GroupRecord]]:
    """The job and its failed groups (sorted by group id). Raises UnknownJob."""
    job = ledger.get_job(job_id)
    if job is None:
        raise UnknownJob(job_id)
    failed = ledger.list_groups(job_id, status="failed")
    return job, sorted(failed, key=lambda g: g.group_id)


def announce_job(
    ledger: Ledger,
    job_id: str,
    *,
    store_for: Callable[[str], tuple[ObjectStore, str]],
    events: JobEvents,
) -> JobRecord:
    """Write a finished job's results manifest and summary again, and publish "Job Finished" again.

    For the rare job whose announcement failed after its last verdict was counted (the ledger lets
    exactly one verdict finish a job, so no redelivery retries it). ``store_for(results_location)``
    gives the store and key to write to. Raises UnknownJob, or InputError when the job is not finished.
    """
    from fanfetch.app.jobs import finish_job

    job = ledger.get_job(job_id)
    if job is None:
        raise UnknownJob(job_id)
    if not job.finished:
        raise InputError(f"job {job_id!r} is not finished: {job.done:,} of {job.total_groups:,} groups have a verdict")
    store, key = store_for(job.results_location)
    finish_job(job, ledger=ledger, store=store, events=events, results_key=key)
    return job


def watch_progress(
    ledger: Ledger,
    job_id: str,
    *,
    now: Callable[[], float],
    sleep: Callable[[float], None],
    interval_s: float,
    on_update: Callable[[JobProgress], None],
) -> JobProgress:
    """Read progress every ``interval_s`` until the job finishes; return the last reading.

    Ctrl-C (KeyboardInterrupt) ends the watch (not the job) and returns the last reading.
    """
    progress = read_progress(ledger, job_id, now=now())
    on_update(progress)
    try:
        while not progress.finished:
            sleep(interval_s)
            progress = read_progress(ledger, job_id, now=now())
            on_update(progress)
    except KeyboardInterrupt:
        pass
    return progress


# --- redrive -----------------------------------------------------------------------------------

"""The two use cases, orchestrated through ports: enqueue a job; download, merge and store one group.

Both Lambdas and the CLI call these; none of them builds a client here (``fanfetch.bootstrap`` does).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass

from fanfetch.app.group_download import GroupDownloadFailed, all_missing, download_all
from fanfetch.app.group_output import (
    done_marker_key,
    open_parts,
    plan_write,
    settle_spool,
    store_each,
    store_merged,
    stored_as_is,
)
from fanfetch.app.spool import SpoolBudget, SpoolHold, classify_spool_error
from fanfetch.core.fingerprint import fingerprint_group
from fanfetch.core.ledger import Validator
from fanfetch.core.merge import html_part
from fanfetch.core.messages import encode_job
from fanfetch.core.models import Group, GroupResult, GroupStatus, Job, MergeMode
from fanfetch.core.redact import redact_text
from fanfetch.errors import (
    DeadlineExceeded,
    FanfetchError,
    FetchError,
    MergeError,
    OutputExists,
    RetryableFetchError,
    RetryableStoreError,
    StoreError,
    is_retryable,
)
from fanfetch.ports import Clock, Fetcher, Ledger, ObjectStore, StoredObject, WorkQueue

__all__ = ["EnqueueResult", "enqueue_job", "process_group", "GroupContext"]


@dataclass(frozen=True)
class EnqueueResult:
    """What the producer reports: the job id, how many groups, how many messages were sent."""

    job_id: str
    groups: int
    messages: int

    def to_dict(self) -> dict[str, object]:
        return {"job_id": self.job_id, "groups": self.groups, "messages": self.messages}


def enqueue_job(
    job: Job,
    queue: WorkQueue,
    *,
    refresh: bool = False,
    ledger: Ledger | None = None,
    results_location: str = "",
    now: Callable[[], float] = time.time,
) -> EnqueueResult:
    """Send one message per group. Every message is encoded (and size-checked) before the first send.

    With ``refresh`` the workers re-check existing outputs against the origin (incremental runs).
    With a ``ledger`` the job is opened (its totals recorded) before the first message can be counted.
    """
    bodies = encode_job(job.job_id, job.groups, refresh=refresh)
    if ledger is not None:
        ledger.open_job(job.job_id, total_groups=len(job.groups), total_files=job.file_count,
                        results_location=results_location, now=now(), group_ids=[g.group_id for g in job.groups])
    sent = queue.send_messages(bodies)
    return EnqueueResult(job_id=job.job_id, groups=len(job.groups), messages=sent)


@dataclass(frozen=True)
class GroupContext:
    """Everything ``process_group`` needs besides the group: the ports and the knobs."""

    fetcher: Fetcher
    store: ObjectStore
    files: Executor  # the shared file-download pool (bounds files in flight across groups)
    clock: Clock
    spool_dir: str | None = None  # where downloads and merged outputs are spooled (None: system temp)
    chunk_bytes: int = 1 << 20
    spool_memory_bytes: int = 64 * 1024  # a download up to this size stays in memory, larger ones go to disk
    now: Callable[[], float] = time.time  # wall clock (epoch seconds) for started/finished stamps
    # refresh runs: (sha256, validators) of the output last stored at a key (the job ledger's memory)
    previous: Callable[[str], tuple[str | None, tuple[Validator, ...]]] | None = None
    spool: SpoolBudget | None = None  # temp disk the groups in flight may use together (None: unbounded)


def _stored_result(group: Group, stored: StoredObject, *, files: int) -> GroupResult:
    return GroupResult(
        group_id=group.group_id,
        status=GroupStatus.OK,
        key=group.key,
        files=files,
        bytes=stored.size,
        sha256=stored.sha256,
        attempts=0,
        skipped=True,
    )


def _failed_result(group: Group, error: BaseException, *, attempts: int) -> GroupResult:
    reason = str(error) if isinstance(error, FanfetchError) else redact_text(f"{type(error).__name__}: {error}")
    return GroupResult(
        group_id=group.group_id,
        status=GroupStatus.FAILED,
        key=group.key,
        files=len(group.sources),
        attempts=attempts,
        error=reason,
        retryable=is_retryable(error),
    )


def _already_done(group: Group, store: ObjectStore) -> StoredObject | None:
    if group.merge is MergeMode.NONE:
        return store.head(done_marker_key(group))
    return store.head(group.key)


def process_group(
    group: Group,
    ctx: GroupContext,
    *,
    deadline: float | None = None,
    refresh: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> GroupResult:
    """Download every file of ``group``, merge, store once complete; never raises for a group failure.

    A group whose output already exists (stores are atomic, so existing means complete) is
    skipped without any request — unless ``refresh``: then the origin is asked again, with
    conditional requests when validators from the last run are known, and the output is rewritten
    only if its content changed (``change`` says "new", "changed" or "unchanged").
    ``deadline`` is an absolute ``ctx.clock.monotonic()`` value. The result carries wall-clock
    ``started_at``/``finished_at`` for reports. With ``ctx.spool`` the group first waits for room on the
    spool disk (``should_stop`` or the deadline end the wait); one that can never fit fails permanently.
    """
    started_at = ctx.now()
    result = _process(group, ctx, deadline, refresh, should_stop)
    return dataclasses.replace(result, started_at=started_at, finished_at=ctx.now())


def _spool_hold(
    group: Group, ctx: GroupContext, deadline: float | None, should_stop: Callable[[], bool]
) -> SpoolHold | None:
    """Wait for the group's room on the spool disk (None without a budget); raises FanfetchError."""
    if ctx.spool is None:
        return None

    def give_up() -> FanfetchError | None:
        if should_stop():
            return DeadlineExceeded(f"group {group.group_id!r} not started: the run was stopped while it waited "
                                    "for spool space")
        if deadline is not None and ctx.clock.monotonic() >= deadline:
            return DeadlineExceeded(f"group {group.group_id!r} not started: the deadline passed while it waited "
                                    "for spool space")
        return None

    factor = 1 if stored_as_is(group) else 2  # a merge keeps every part and the merged output at once
    return ctx.spool.hold(group.group_id, [s.size for s in group.sources], factor=factor, give_up=give_up)


def _process(
    group: Group, ctx: GroupContext, deadline: float | None, refresh: bool, should_stop: Callable[[], bool]
) -> GroupResult:
    hold: SpoolHold | None = None
    fingerprint = fingerprint_group(group)
    try:
        stored = _already_done(group, ctx.store)
        if stored is not None and stored.fingerprint == fingerprint and not refresh:
            return _stored_result(group, stored, files=len(group.sources))
        hold = _spool_hold(group, ctx, deadline, should_stop)
    except FanfetchError as exc:
        failed = _failed_result(group, exc, attempts=0)  # a stop or deadline while waiting for spool: never begun
        return dataclasses.replace(failed, started=False) if isinstance(exc, DeadlineExceeded) else failed
    try:
        return _process_held(group, ctx, deadline, refresh, stored, hold, fingerprint)
    except OSError as exc:  # the spool disk (a full one above all): a failed group, never a crashed batch
        return _failed_result(group, classify_spool_error(exc, hold), attempts=0)
    finally:
        if hold is not None:
            hold.release()


def _process_held(
    group: Group,
    ctx: GroupContext,
    deadline: float | None,
    refresh: bool,
    stored: StoredObject | None,
    hold: SpoolHold | None,
    fingerprint: str,
) -> GroupResult:
    try:
        write = plan_write(stored, fingerprint, refresh=refresh)
        existed = stored is not None
        if stored is not None and stored.fingerprint != fingerprint:
            stored = None  # a stale or foreign output is neither skipped nor compared against
        if deadline is not None and ctx.clock.monotonic() >= deadline:
            raise DeadlineExceeded(f"group {group.group_id!r} not started: the deadline has passed")
        validators: dict[str, Validator] = {}
        if refresh and stored is not None and ctx.previous is not None:
            validators = {v.url: v for v in ctx.previous(group.key)[1]}  # kept under redacted URLs
    except FanfetchError as exc:
        return _failed_result(group, exc, attempts=0)
    missing: dict[int, FetchError] = {}  # on_missing=skip: files the origin says are gone (404/410)
    with ExitStack() as stack:
        parts = open_parts(group, ctx, stack, hold)
        try:
            results = download_all(group, ctx, parts, deadline, validators=validators, missing=missing)
            settle_spool(ctx, parts, results)
            unchanged = [i for i, r in enumerate(results) if r.not_modified]
            if unchanged and stored is not None and len(unchanged) == len(results):
                attempts = sum(r.attempts for r in results)
                return dataclasses.replace(_stored_result(group, stored, files=len(results)), attempts=attempts,
                                           skipped=False, change="unchanged", file_results=tuple(results))
            if unchanged:  # some files changed: the merge needs the unchanged ones' bytes too
                again = download_all(group, ctx, parts, deadline, validators={}, only=unchanged, missing=missing)
                for index, result in zip(unchanged, again, strict=True):
                    results[index] = dataclasses.replace(result, attempts=result.attempts + results[index].attempts)
                settle_spool(ctx, parts, results, observe=False)
        except GroupDownloadFailed as failed:
            return _failed_result(group, classify_spool_error(failed.error, hold), attempts=failed.attempts)
        attempts = sum(r.attempts for r in results)
        if missing:
            if len(missing) == len(results):
                return _failed_result(group, all_missing(group, missing), attempts=attempts)
            present = [i for i in range(len(results)) if i not in missing]
            parts, results = [parts[i] for i in present], [results[i] for i in present]
        html = html_part([r.url for r in results], [r.content_type for r in results]) \
            if group.merge is MergeMode.CSV else None
        if html is not None:  # strict csv: an error or login page must not become rows
            error = RetryableFetchError(html, "served as text/html, not CSV (merge csv-lenient keeps it)", status=200)
            return _failed_result(group, error, attempts=attempts)
        try:
            if group.merge is MergeMode.NONE:
                result = store_each(group, ctx, parts, results, attempts, write=write)
            else:
                result = store_merged(group, ctx, parts, results, attempts, write=write,
                                       unchanged_sha256=stored.sha256 if refresh and stored else None)
        except OutputExists:
            # A concurrent or earlier delivery stored it first: done, and counted once (as skipped).
            stored = _already_done(group, ctx.store)
            if stored is None or stored.fingerprint != fingerprint:
                what = "not found" if stored is None else "holds another definition's output"
                error = RetryableStoreError(f"{group.key!r}: another writer changed it meanwhile and it {what}")
                return _failed_result(group, error, attempts=attempts)
            return dataclasses.replace(_stored_result(group, stored, files=len(group.sources)), attempts=attempts)
        except (StoreError, MergeError) as exc:
            return _failed_result(group, exc, attempts=attempts)
        except OSError as exc:  # spooling the merged output (a full disk): classified, the batch goes on
            return _failed_result(group, classify_spool_error(exc, hold), attempts=attempts)
        if refresh and result.change is None:
            result = dataclasses.replace(result, change="changed" if existed else "new")
        if missing:
            result = dataclasses.replace(result, missing=tuple(e.url for _, e in sorted(missing.items())))
        return result

"""The two use cases, orchestrated through ports: enqueue a job; download, merge and store one group.

Both Lambdas and the CLI call these; none of them builds a client here (``fanfetch.bootstrap`` does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO

from fanfetch.app.spool import MeteredPart, SpoolBudget, SpoolHold, classify_spool_error
from fanfetch.core.fingerprint import fingerprint_group
from fanfetch.core.ledger import Validator
from fanfetch.core.merge import INDEX_NAME, html_part, merge_streams, name_files
from fanfetch.core.messages import encode_job
from fanfetch.core.models import FileResult, Group, GroupResult, GroupStatus, Job, MergeMode, OnMissing
from fanfetch.core.redact import redact_text, redact_url
from fanfetch.errors import (
    DeadlineExceeded,
    FanfetchError,
    FetchError,
    MergeError,
    OutputExists,
    PermanentFetchError,
    RetryableFetchError,
    RetryableStoreError,
    StoreError,
    is_retryable,
)
from fanfetch.ports import Clock, Fetcher, Ledger, ObjectStore, StoredObject, WorkQueue

__all__ = ["EnqueueResult", "enqueue_job", "process_group", "done_marker_key", "GroupContext"]


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


def done_marker_key(group: Group) -> str:
    """For merge mode ``none`` (many objects per group): the object whose presence means "group done"."""
    return f"{group.key.rstrip('/')}/{INDEX_NAME}"  # name_files never gives a file this name


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


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._raw.write(data)


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


@dataclass(frozen=True)
class _Write:
    """How the output is written: created (conditional), replacing a stale one, or overwritten (refresh)."""

    fingerprint: str
    overwrite: bool = False
    replaces: str | None = None


def _plan_write(stored: StoredObject | None, fingerprint: str, *, refresh: bool) -> _Write:
    """Only an output carrying this definition's fingerprint is current. Anything else at the key (an older
    definition, or an object fanfetch did not write) is replaced, conditionally on that very object."""
    if stored is None:
        return _Write(fingerprint)
    if stored.fingerprint == fingerprint:
        return _Write(fingerprint, overwrite=refresh)
    return _Write(fingerprint, overwrite=stored.version is None, replaces=stored.version)


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

    factor = 1 if _stored_as_is(group) else 2  # a merge keeps every part and the merged output at once
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
        write = _plan_write(stored, fingerprint, refresh=refresh)
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
        parts = _open_parts(group, ctx, stack, hold)
        try:
            results = _download_all(group, ctx, parts, deadline, validators=validators, missing=missing)
            _settle_spool(ctx, parts, results)
            unchanged = [i for i, r in enumerate(results) if r.not_modified]
            if unchanged and stored is not None and len(unchanged) == len(results):
                attempts = sum(r.attempts for r in results)
                return dataclasses.replace(_stored_result(group, stored, files=len(results)), attempts=attempts,
                                           skipped=False, change="unchanged", file_results=tuple(results))
            if unchanged:  # some files changed: the merge needs the unchanged ones' bytes too
                again = _download_all(group, ctx, parts, deadline, validators={}, only=unchanged, missing=missing)
                for index, result in zip(unchanged, again, strict=True):
                    results[index] = dataclasses.replace(result, attempts=result.attempts + results[index].attempts)
                _settle_spool(ctx, parts, results, observe=False)
        except _GroupDownloadFailed as failed:
            return _failed_result(group, classify_spool_error(failed.error, hold), attempts=failed.attempts)
        attempts = sum(r.attempts for r in results)
        if missing:
            if len(missing) == len(results):
                return _failed_result(group, _all_missing(group, missing), attempts=attempts)
            present = [i for i in range(len(results)) if i not in missing]
            parts, results = [parts[i] for i in present], [results[i] for i in present]
        html = html_part([r.url for r in results], [r.content_type for r in results]) \
            if group.merge is MergeMode.CSV else None
        if html is not None:  # strict csv: an error or login page must not become rows
            error = RetryableFetchError(html, "served as text/html, not CSV (merge csv-lenient keeps it)", status=200)
            return _failed_result(group, error, attempts=attempts)
        try:
            if group.merge is MergeMode.NONE:
                result = _store_each(group, ctx, parts, results, attempts, write=write)
            else:
                result = _store_merged(group, ctx, parts, results, attempts, write=write,
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


def _stored_as_is(group: Group) -> bool:
    """Groups whose files are stored byte for byte (no merge): download them into named files, so
    the store can move them into place instead of copying (a 256 MiB file saves a full copy)."""
    return group.merge is MergeMode.NONE or (group.merge is MergeMode.CONCAT and len(group.sources) == 1)


def _open_parts(group: Group, ctx: GroupContext, stack: ExitStack, hold: SpoolHold | None) -> list[BinaryIO]:
    """One writable file per source: named files for groups stored as is; otherwise small files stay
    in memory and larger ones roll over to disk in spool_dir (bounded memory either way). With a spool
    hold every write is metered against the group's share of the spool budget."""
    if _stored_as_is(group):
        parts = [stack.enter_context(_named_part(ctx)) for _ in group.sources]
    else:
        parts = [
            stack.enter_context(tempfile.SpooledTemporaryFile(max_size=ctx.spool_memory_bytes, dir=ctx.spool_dir))
            for _ in group.sources
        ]
    if hold is None:
        return parts
    return [MeteredPart(p, hold) for p in parts]  # type: ignore[misc]


def _settle_spool(ctx: GroupContext, parts: list[BinaryIO], results: list[FileResult], *, observe: bool = True) -> None:
    """Charge what the meter could not see (writes at offsets) and feed the budget's running estimate."""
    if ctx.spool is None:
        return
    for part, result in zip(parts, results, strict=True):
        if isinstance(part, MeteredPart) and not result.not_modified:
            part.settle(result.bytes)
    if observe:
        ctx.spool.observe([r.bytes for r in results if not r.not_modified])


@contextmanager
def _named_part(ctx: GroupContext) -> Iterator[BinaryIO]:
    handle = tempfile.NamedTemporaryFile(prefix="part-", dir=ctx.spool_dir, delete=False)  # noqa: SIM115
    try:
        yield handle  # type: ignore[misc]
    finally:
        handle.close()
        if os.path.exists(handle.name):  # the store may have moved it into place
            os.unlink(handle.name)


def _hash_file(handle: BinaryIO, chunk_bytes: int) -> tuple[str, int]:
    handle.flush()
    handle.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(chunk_bytes):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _digest_of(part: BinaryIO, result: FileResult, chunk_bytes: int) -> tuple[str, int]:
    """(sha256, size) of a downloaded file: the fetcher's, hashed on the way, when it gave one."""
    if result.sha256 is None:
        return _hash_file(part, chunk_bytes)
    part.flush()  # the store reads it by name
    return result.sha256, result.bytes


class _GroupDownloadFailed(Exception):
    def __init__(self, error: BaseException, attempts: int):
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


def _download_all(
    group: Group,
    ctx: GroupContext,
    parts: list[BinaryIO],
    deadline: float | None,
    *,
    validators: Mapping[str, Validator],
    only: list[int] | None = None,
    missing: dict[int, FetchError] | None = None,
) -> list[FileResult]:
    """Fetch the group's files (or the ``only`` indices) into ``parts``; fail fast on the first error.

    With ``on_missing=skip`` a 404/410 is not an error: it is recorded in ``missing`` (by index) and the
    file's result is empty; every other failure (5xx, network) still fails the group."""
    cancelled = False
    # Files stored as they are: the fetcher hashes them while they arrive (no second read here);
    # merged groups hash the merged output as it is written instead.
    digest = _stored_as_is(group)

    def fetch_one(index: int) -> FileResult:
        if cancelled:
            raise _Cancelled()
        source = group.sources[index]
        if deadline is not None and ctx.clock.monotonic() >= deadline:
            raise DeadlineExceeded(f"group {group.group_id!r}: deadline reached before {source.url}")
        options: dict[str, object] = {"deadline": deadline}
        validator = validators.get(redact_url(source.url))
        if validator is not None:
            validator = dataclasses.replace(validator, url=source.url)
        if validator is not None:
            options["validator"] = validator
        if digest:  # only then: a fetcher without either option still serves the other groups
            options["digest"] = True
        try:
            return ctx.fetcher.fetch(source, parts[index], **options)  # type: ignore[arg-type]
        except PermanentFetchError as exc:
            if missing is None or group.on_missing is not OnMissing.SKIP or exc.status not in MISSING_STATUSES:
                raise
            missing[index] = exc
            return FileResult(source.url, 0, exc.attempts)

    indices = list(range(len(group.sources))) if only is None else only
    fetch_async = getattr(ctx.fetcher, "fetch_async", None)
    if fetch_async is not None:
        return _download_async(group, ctx, parts, deadline, validators, indices, missing, digest, fetch_async)
    futures: list[Future[FileResult]] = [ctx.files.submit(fetch_one, i) for i in indices]
    done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    first_error = _first_error(futures)
    if first_error is not None:
        # Fail fast: files not yet started are not fetched; running ones finish on their own.
        cancelled = True
        for future in pending:
            future.cancel()
        wait(futures)
        attempts = sum(_attempts_of(f) for f in futures)
        # judged again once the running files ended: a 404 finishing after a 503 still makes the group permanent
        raise _GroupDownloadFailed(_first_error(futures) or first_error, attempts)
    return [f.result() for f in futures]


def _download_async(
    group: Group,
    ctx: GroupContext,
    parts: list[BinaryIO],
    deadline: float | None,
    validators: Mapping[str, Validator],
    indices: list[int],
    missing: dict[int, FetchError] | None,
    digest: bool,
    fetch_async: Callable[..., Future[FileResult]],
) -> list[FileResult]:
    """``_download_all`` over a fetcher that needs no thread per file: the same checks, the same fail-fast,
    one wake-up of this thread per group (when its last file ends)."""
    cancelled = False
    all_done = threading.Event()
    lock = threading.Lock()
    remaining = [len(indices)]
    skipped: dict[int, FileResult] = {}  # on_missing=skip: the empty result standing for a missing file

    def before(index: int) -> None:
        if cancelled:
            raise _Cancelled()
        if deadline is not None and ctx.clock.monotonic() >= deadline:
            raise DeadlineExceeded(f"group {group.group_id!r}: deadline reached before {group.sources[index].url}")

    def start(index: int) -> Future[FileResult]:
        source = group.sources[index]
        validator = validators.get(redact_url(source.url)) if validators else None
        if validator is not None:
            validator = dataclasses.replace(validator, url=source.url)
        return fetch_async(source, parts[index], deadline=deadline, validator=validator, digest=digest,
                           before=partial(before, index))

    futures: list[Future[FileResult]] = []

    def ended(index: int, future: Future[FileResult]) -> None:
        nonlocal cancelled
        error = None if future.cancelled() else future.exception()
        if isinstance(error, PermanentFetchError) and missing is not None \
                and group.on_missing is OnMissing.SKIP and error.status in MISSING_STATUSES:
            missing[index] = error
            skipped[index] = FileResult(group.sources[index].url, 0, error.attempts)
        elif error is not None and not isinstance(error, _Cancelled) and not cancelled:
            cancelled = True  # fail fast: files not yet started are not fetched; running ones finish
            for other in list(futures):  # the ones not yet asked for are refused by ``before``
                other.cancel()
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            all_done.set()

    for index in indices:
        future = start(index)
        futures.append(future)
        future.add_done_callback(partial(ended, index))
    all_done.wait()
    outcomes = [_SkippedFuture(skipped[i]) if i in skipped else f for i, f in zip(indices, futures, strict=True)]
    error = _first_error(outcomes)  # type: ignore[arg-type]
    if error is not None:
        raise _GroupDownloadFailed(error, sum(_attempts_of(f) for f in outcomes))  # type: ignore[arg-type]
    return [f.result() for f in outcomes]


class _SkippedFuture(Future):  # type: ignore[type-arg]
    """A missing file's stand-in result (on_missing=skip), read like the other futures."""

    def __init__(self, result: FileResult):
        super().__init__()
        self.set_result(result)


MISSING_STATUSES = frozenset({404, 410})  # what on_missing=skip leaves out; 5xx and network failures still fail


def _all_missing(group: Group, missing: Mapping[int, FetchError]) -> PermanentFetchError:
    urls = [e.url for _, e in sorted(missing.items())]
    shown = ", ".join(urls[:3]) + (f" and {len(urls) - 3} more" if len(urls) > 3 else "")
    status = next(iter(missing.values())).status
    return PermanentFetchError(urls[0], f"every file of the group is missing (HTTP 404/410): {shown}", status=status)


class _Cancelled(Exception):
    """A file skipped because another file of its group already failed."""


def _first_error(futures: list[Future[FileResult]]) -> BaseException | None:
    """The most telling failure among the finished futures: permanent before retryable, in URL order."""
    errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    errors = [e for e in errors if not isinstance(e, _Cancelled)]
    if not errors:
        return None
    for error in errors:
        if isinstance(error, PermanentFetchError):
            return error
    return errors[0]


def _attempts_of(future: Future[FileResult]) -> int:
    if future.cancelled():
        return 0
    error = future.exception()
    if error is None:
        return future.result().attempts
    if isinstance(error, FetchError):
        return error.attempts
    return 0


@contextmanager
def _spool_file(ctx: GroupContext, prefix: str) -> Iterator[tuple[str, BinaryIO]]:
    """A named temp file in the spool folder, removed afterwards unless the store moved it away."""
    handle = tempfile.NamedTemporaryFile(prefix=prefix, dir=ctx.spool_dir, delete=False)  # noqa: SIM115
    try:
        yield handle.name, handle  # type: ignore[misc]
    finally:
        handle.close()
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def _store_merged(
    group: Group,
    ctx: GroupContext,
    parts: list[BinaryIO],
    results: list[FileResult],
    attempts: int,
    *,
    write: _Write,
    unchanged_sha256: str | None = None,
) -> GroupResult:
    with ExitStack() as stack:
        if _stored_as_is(group):  # one file, concat: the download itself is the output
            (part,), (result,) = parts, results
            digest, size = _digest_of(part, result, ctx.chunk_bytes)
            path = part.name  # type: ignore[attr-defined]
        else:
            path, raw = stack.enter_context(_spool_file(ctx, "merged-"))
            writer = _HashingWriter(raw)
            merge_streams(group.merge, parts, writer, chunk_bytes=ctx.chunk_bytes,  # type: ignore[arg-type]
                          labels=[r.url for r in results])
            raw.close()
            digest, size = writer.sha256.hexdigest(), writer.bytes
        stored = partial(GroupResult, group_id=group.group_id, status=GroupStatus.OK, key=group.key,
                         files=len(results), sha256=digest, attempts=attempts, file_results=tuple(results))
        if unchanged_sha256 is not None and digest == unchanged_sha256:
            # A refresh found the same bytes (no validators, or new ones): leave the output alone.
            return stored(bytes=size, change="unchanged")
        return stored(bytes=ctx.store.put_file(group.key, path, sha256=digest, overwrite=write.overwrite,
                                               fingerprint=write.fingerprint, replaces=write.replaces).size)


def _store_each(
    group: Group,
    ctx: GroupContext,
    parts: list[BinaryIO],
    results: list[FileResult],
    attempts: int,
    *,
    write: _Write,
) -> GroupResult:
    prefix = group.key.rstrip("/")
    names = name_files([r.url for r in results])  # the files stored (on_missing=skip leaves some out)
    entries = []
    total = 0
    for name, part, result in zip(names, parts, results, strict=True):
        digest, _ = _digest_of(part, result, ctx.chunk_bytes)
        part.close()
        size = _put_part(ctx.store, f"{prefix}/{name}", part.name, digest,  # type: ignore[attr-defined]
                         overwrite=write.overwrite)
        total += size
        entries.append({"name": name, "url": redact_url(result.url), "bytes": size, "sha256": digest})
    index = json.dumps({"group": group.group_id, "fingerprint": write.fingerprint, "files": entries},
                       indent=1).encode()
    group_digest = hashlib.sha256(index).hexdigest()
    # The marker goes last: its presence (with this fingerprint) means every file of the group is stored.
    ctx.store.put_bytes(done_marker_key(group), index, content_type="application/json",  # unconditional
                        fingerprint=write.fingerprint)
    return GroupResult(
        group_id=group.group_id,
        status=GroupStatus.OK,
        key=group.key,
        files=len(results),
        bytes=total,
        sha256=group_digest,
        attempts=attempts,
        file_results=tuple(results),
    )


def _put_part(store: ObjectStore, key: str, path: str, digest: str, *, overwrite: bool) -> int:
    """Store one file of a ``none`` group. A file already there is kept only if it holds these very bytes
    (an earlier delivery that died before writing the index); a stale one (an interrupted run of another
    definition, or a file fanfetch did not write) is replaced, so the index never lists a hash it lacks."""
    try:
        return store.put_file(key, path, sha256=digest, overwrite=overwrite).size
    except OutputExists:
        there = store.head(key)
        if there is not None and there.sha256 == digest:
            return there.size
        return store.put_file(key, path, sha256=digest, overwrite=there is None or there.version is None,
                              replaces=there.version if there is not None else None).size

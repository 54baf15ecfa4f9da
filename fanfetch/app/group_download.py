"""Downloading the files of one group: fetch them all (a thread per file, or one fetcher that needs none),
fail fast on the first error, and leave out the files ``on_missing=skip`` lets go missing.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, CancelledError, Future, wait
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from fanfetch.app.group_output import stored_as_is
from fanfetch.core.ledger import Validator
from fanfetch.core.models import FileResult, Group, OnMissing
from fanfetch.core.redact import redact_url
from fanfetch.errors import DeadlineExceeded, FetchError, PermanentFetchError

if TYPE_CHECKING:
    from fanfetch.app.services import GroupContext

__all__ = ["GroupDownloadFailed", "download_all", "all_missing", "MISSING_STATUSES"]


class GroupDownloadFailed(Exception):
    """A group's downloads failed: the most telling error, and the attempts all its files took."""

    def __init__(self, error: BaseException, attempts: int):
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


def download_all(
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
    digest = stored_as_is(group)

    def fetch_one(index: int) -> FileResult:
        if cancelled:
            raise _Cancelled()
        source = group.sources[index]
        if deadline is not None and ctx.clock.monotonic() >= deadline:
            raise DeadlineExceeded(f"group {group.group_id!r}: deadline reached before {source.url}")
        options: dict[str, object] = {"deadline": deadline}
        validator = _validator_for(validators, source.url)
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
        raise GroupDownloadFailed(_first_error(futures) or first_error, attempts)
    return [f.result() for f in futures]


def _validator_for(validators: Mapping[str, Validator], url: str) -> Validator | None:
    """The validator the ledger keeps for ``url`` (under its redacted form), addressed to the real URL; no
    redaction at all when there are none (every run but a refresh)."""
    if not validators:
        return None
    validator = validators.get(redact_url(url))
    return None if validator is None else dataclasses.replace(validator, url=url)


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
    """``download_all`` over a fetcher that needs no thread per file: the same checks, the same fail-fast,
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
        return fetch_async(source, parts[index], deadline=deadline, validator=_validator_for(validators, source.url),
                           digest=digest, before=partial(before, index))

    futures: list[Future[FileResult]] = []
    failed = False  # some file ended with an error (any kind): only then are the outcomes sorted out below

    def ended(index: int, future: Future[FileResult]) -> None:
        nonlocal cancelled, failed
        try:  # one look (a lock round-trip) at the future: this runs on the engine's I/O thread
            error = future.exception()
        except CancelledError:
            error = None
        if error is not None:
            failed = True
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
    try:
        if not failed and not skipped and not cancelled:  # every file ended well: no error to look for
            return [f.result() for f in futures]
        outcomes = [_SkippedFuture(skipped[i]) if i in skipped else f for i, f in zip(indices, futures, strict=True)]
        error = _first_error(outcomes)  # type: ignore[arg-type]
        if error is not None:
            raise GroupDownloadFailed(error, sum(_attempts_of(f) for f in outcomes))  # type: ignore[arg-type]
        return [f.result() for f in outcomes]
    finally:  # each future's done-callback holds this list (through ``ended``): emptied, no cycle is left for gc
        futures.clear()


class _SkippedFuture(Future):  # type: ignore[type-arg]
    """A missing file's stand-in result (on_missing=skip), read like the other futures."""

    def __init__(self, result: FileResult):
        super().__init__()
        self.set_result(result)


MISSING_STATUSES = frozenset({404, 410})  # what on_missing=skip leaves out; 5xx and network failures still fail


def all_missing(group: Group, missing: Mapping[int, FetchError]) -> PermanentFetchError:
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

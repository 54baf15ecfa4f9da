"""Runs many groups at once: a pool of group workers over one shared pool of file downloads.

The same engine serves the local runner and the Lambda worker (a batch of up to 10 groups), so
both get the same concurrency, deadline and stop behaviour.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from fanfetch.app.services import GroupContext, process_group
from fanfetch.core.models import Group, GroupResult, GroupStatus
from fanfetch.errors import DeadlineExceeded

__all__ = ["run_groups", "NOT_STARTED"]

NOT_STARTED = "not started: the run was stopped before this group began"


def run_groups(
    groups: Iterable[Group],
    ctx: GroupContext,
    *,
    group_workers: int,
    deadline: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_result: Callable[[GroupResult], None] = lambda result: None,
    keep_file_results: bool = True,
    refresh: Sequence[bool] | bool = False,
    keep_results: bool = True,
) -> list[GroupResult]:
    """Process ``groups`` with up to ``group_workers`` in flight; return results in input order.

    Groups are taken from ``groups`` lazily, at most ``2 × group_workers`` ahead of the ones running
    (a million-group run starts at once and never holds a million futures). Groups not yet started
    when ``should_stop()`` turns true, or when ``deadline`` (absolute ``ctx.clock.monotonic()``) has
    passed, are reported failed and retryable without any request. ``on_result`` is called once per
    group, from worker threads, as each finishes. With ``keep_file_results=False`` the returned results
    drop their per-file details once ``on_result`` has seen them; with ``keep_results=False`` nothing is
    kept (``on_result`` is the only output, the list is empty: a million-group run holds no result per
    group). ``refresh`` (one flag for all, or one per group) re-checks existing outputs against the origin.
    """
    if group_workers < 1:
        raise ValueError("group_workers must be at least 1")
    results: list[GroupResult | None] = []
    lock = threading.Lock()
    window = threading.BoundedSemaphore(2 * group_workers)  # groups submitted and not yet finished
    failures: list[BaseException] = []

    def run_one(index: int, group: Group) -> None:
        try:
            if should_stop():
                result = _not_started(group, NOT_STARTED)
            elif deadline is not None and ctx.clock.monotonic() >= deadline:
                result = _not_started(group, str(DeadlineExceeded("not started: too little time left before the "
                                                                  "deadline")))
            else:
                again = refresh if isinstance(refresh, bool) else refresh[index]
                result = process_group(group, ctx, deadline=deadline, refresh=again, should_stop=should_stop)
            on_result(result)
            if keep_results:
                with lock:
                    results[index] = result if keep_file_results else dataclasses.replace(result, file_results=())
        except BaseException as exc:  # noqa: BLE001 - a bug in run_one: re-raised below, never a lost group
            with lock:
                failures.append(exc)
        finally:
            window.release()

    with ThreadPoolExecutor(max_workers=group_workers, thread_name_prefix="group") as pool:
        for index, group in enumerate(groups):
            window.acquire()
            if failures:
                window.release()
                break
            if keep_results:
                with lock:
                    results.append(None)
            if should_stop():  # nothing to fetch: answered here, not handed to a worker (a stopped run drains fast)
                run_one(index, group)
            else:
                pool.submit(run_one, index, group)
    if failures:
        raise failures[0]
    return [r for r in results if r is not None]


def _not_started(group: Group, reason: str) -> GroupResult:
    return GroupResult(
        group_id=group.group_id,
        status=GroupStatus.FAILED,
        key=group.key,
        files=len(group.sources),
        attempts=0,
        error=reason,
        retryable=True,
        started=False,
    )

"""``fanfetch run``: compose the adapters for one local run (through ``fanfetch.bootstrap``), pre-flight it,
run it with a live progress view, stop on SIGINT/SIGTERM, and summarise. ``fanfetch demo`` runs its job here too.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from rich.console import Console

from fanfetch.adapters.manifests import load_streamed_job
from fanfetch.app.local_run import RunProgress, RunSummary, run_job
from fanfetch.app.preflight import check_destination, check_hosts, check_ledger, run_preflight
from fanfetch.bootstrap.aws import aws_client
from fanfetch.bootstrap.destination import build_destination, open_local_ledger
from fanfetch.bootstrap.fetching import build_fetcher, build_group_context, guard_resolver
from fanfetch.cli.progress import ProgressView, print_summary
from fanfetch.core.locations import parse_s3_uri
from fanfetch.core.manifest_stream import StreamedJob
from fanfetch.core.models import GroupResult, Job, OnMissing
from fanfetch.core.units import plural
from fanfetch.errors import InputError
from fanfetch.settings import allow_hosts_from_env

__all__ = ["execute_job", "command_run", "collect_cycles_less_often"]

# A run holds thousands of files' objects at once (c groups, each with its files queued), so at the cycle collector's
# default young-generation threshold (700 net allocations) a 9,600-file run made ~300 collections that found nothing:
# a file's objects are freed by reference counting (no cycle per file). 10,000 cut gc time per run 4-5x
# (docs/performance.md §10).
GC_YOUNG_THRESHOLD = 10_000


def collect_cycles_less_often() -> None:
    """Raise the young generation's gc threshold to GC_YOUNG_THRESHOLD (never lower it); older ones unchanged."""
    young, *older = gc.get_threshold()
    if young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


class _StopFlag:
    """Set by SIGINT/SIGTERM: stop starting groups, let in-flight ones finish, then summarise. A second
    signal aborts: ``abort()`` cancels every transfer in flight (their groups fail and clean up), then the
    results and the summary are written as usual; a third one stops at once."""

    def __init__(self, console: Console, abort: Callable[[], None] = lambda: None):
        self._event = threading.Event()
        self._console = console
        self._abort = abort
        self.aborted = False

    def __call__(self) -> bool:
        return self._event.is_set()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.aborted:
            raise KeyboardInterrupt  # a third signal: stop now
        if self._event.is_set():
            self.aborted = True
            self._console.print("[red]aborting: cancelling downloads in flight[/]")
            # not in the handler itself: it interrupts the main thread, which may hold a lock abort() needs
            threading.Thread(target=self._abort, name="fanfetch-abort", daemon=True).start()
            return
        self._event.set()
        self._console.print("[yellow]stopping: finishing groups in flight (signal again to abort)[/]")


def execute_job(job: Job | StreamedJob, *, dest: str, concurrency: int, allow_hosts: Sequence[str],
                endpoint_url: str | None, console: Console, quiet: bool = False, refresh: bool = False,
                per_host_concurrency: int | None = None, per_host_rps: float | None = None,
                ledger_path: str | None = None,
                on_result: Callable[[GroupResult], None] = lambda result: None) -> RunSummary:
    """Compose the real adapters for a local run, check that it can finish (pre-flight: exit 2 before any
    download), and run ``job`` into ``dest`` (``on_result`` sees each group's result as it finishes)."""
    if isinstance(job, Job):
        job = StreamedJob.from_job(job)
    collect_cycles_less_often()
    destination = build_destination(dest, endpoint_url=endpoint_url)
    store = destination.store
    # A local destination keeps its own ledger (DEST/_jobs/ledger.sqlite): report timeline, refresh validators.
    if ledger_path is None:
        ledger_path = destination.ledger_path
    ledger, ledger_problems = open_local_ledger(ledger_path)
    try:
        run_preflight([
            lambda: check_destination(store, job, where=dest, now=time.time()),
            lambda: check_hosts(job, guard_resolver(allow_hosts),
                                allow_hint=lambda use: f"add --allow-host {use.host_port} to allow it"),
            lambda: ledger_problems or check_ledger(ledger, job, where=str(ledger_path)),
        ])
    except InputError:
        if ledger is not None:
            ledger.close()
        raise
    spool_dir = destination.make_spool_dir()
    fetcher = build_fetcher(concurrency=concurrency, allow_hosts=tuple(allow_hosts),
                            per_host_concurrency=per_host_concurrency, per_host_rps=per_host_rps)
    ctx = build_group_context(fetcher=fetcher, store=store, concurrency=concurrency, spool_dir=spool_dir,
                              previous=ledger.last_validators if ledger is not None else None)
    stop = _StopFlag(console, abort=fetcher.cancel)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    counters = RunProgress(total_groups=job.group_count, total_files=job.file_count)
    try:
        view = ProgressView(counters, console if not quiet else Console(quiet=True))
        with view:
            def update(result: GroupResult) -> None:
                view.update(result)
                on_result(result)

            summary = run_job(job, ctx, group_workers=concurrency, should_stop=stop, on_result=update,
                              refresh=refresh, ledger=ledger)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ctx.files.shutdown(wait=True, cancel_futures=True)
        fetcher.close()
        if ledger is not None:
            ledger.close()
    print_summary(summary, dest=dest, console=console)
    if stop.aborted:
        console.print("aborted: downloads in flight were cancelled; run the same command again to resume",
                      highlight=False, markup=False)
    return summary


def command_run(args: argparse.Namespace, console: Console) -> int:
    # an s3:// destination's prefix counts against S3's key limit; a local folder's does not
    prefix = parse_s3_uri(args.out)[1] if args.out.startswith("s3://") else ""
    # checked whole now, its groups read again as they run: a million groups are never held at once
    job = load_streamed_job(args.manifest, default_merge=args.merge,
                            key_prefix=prefix.rstrip("/") + "/" if prefix else "",
                            s3_client=lambda: aws_client("s3", endpoint_url=args.endpoint_url))
    job = job.with_default_on_missing(OnMissing(args.on_missing))
    console.print(f"job {job.job_id}: {plural(job.group_count, 'group')}, {plural(job.file_count, 'file')} "
                  f"→ {args.out}", highlight=False, markup=False)
    allow = list(args.allow_host) + list(allow_hosts_from_env(os.environ))
    summary = execute_job(job, dest=args.out, concurrency=args.concurrency, allow_hosts=allow,
                          endpoint_url=args.endpoint_url, console=console, quiet=args.quiet, refresh=args.refresh,
                          per_host_concurrency=args.per_host_concurrency, per_host_rps=args.per_host_rps,
                          ledger_path=args.ledger)
    return summary.exit_code

"""The ``fanfetch`` command: fan out downloads locally, plan, and operate a deployed stack.

Composition root for local runs (``run``, ``demo``); ``plan`` and the operations commands
(``submit``, ``status``, ``failures``, ``redrive``, ``worker``) live in their own modules.
Exit codes: 0 every group stored, 1 some groups failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from rich.console import Console

from fanfetch import __version__
from fanfetch.adapters.ledger_sqlite import SqliteLedger, default_ledger_path
from fanfetch.adapters.local_store import LocalStore
from fanfetch.adapters.manifests import load_streamed_job
from fanfetch.app.local_run import RunProgress, RunSummary, run_job
from fanfetch.app.preflight import check_destination, check_hosts, check_ledger, run_preflight
from fanfetch.bootstrap import aws_client, build_fetcher, build_group_context, build_store, guard_resolver
from fanfetch.cli.args import (
    OneLineParser,
    allow_host,
    concurrency,
    destination,
    endpoint_url,
    latency_ms,
    merge_mode,
    port_number,
    positive_float,
    positive_int,
)
from fanfetch.cli.ops import OpsDeps, add_ops_parsers, run_ops_command
from fanfetch.cli.plan import add_plan_parser, command_plan
from fanfetch.cli.progress import ProgressView, print_summary
from fanfetch.cli.report import add_report_parser, command_report
from fanfetch.core.manifest_stream import StreamedJob
from fanfetch.core.models import GroupResult, Job, MergeMode, OnMissing
from fanfetch.core.units import plural
from fanfetch.errors import FanfetchError, InputError
from fanfetch.settings import allow_hosts_from_env

__all__ = ["main", "execute_job"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=concurrency, default=32,
                        help="downloads in flight at once (default 32)")
    parser.add_argument("--allow-host", type=allow_host, action="append", default=[], metavar="HOST[:PORT]",
                        help="allow downloads from this otherwise refused (private/loopback) host; repeatable")
    parser.add_argument("--endpoint-url", type=endpoint_url, default=os.environ.get("AWS_ENDPOINT_URL") or None,
                        help="S3-compatible endpoint for s3:// destinations and manifests")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    _add_politeness_options(parser)


def _add_politeness_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-host-concurrency", type=positive_int, default=None, metavar="N",
                        help="at most N requests in flight to any one host (default: no cap)")
    parser.add_argument("--per-host-rps", type=positive_float, default=None, metavar="R",
                        help="at most R requests per second to any one host, slowing down further on 429/503 "
                             "(default: no limit)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fanfetch", description="Fan out many HTTP downloads, merge them per "
                                     "group, store them in a folder or S3; plan and operate the AWS deployment.")
    parser.add_argument("--version", action="version", version=f"fanfetch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a job on this machine (no AWS account needed)")
    run.add_argument("manifest", help="JSON Lines, CSV or TOML job spec; a path, - for stdin, or s3://bucket/key")
    run.add_argument("--out", type=destination, required=True, metavar="DEST", help="a local folder or s3://bucket/prefix")
    run.add_argument("--merge", type=merge_mode, default=MergeMode.CONCAT,
                     help="merge mode for groups that do not name one: csv, concat (default), none, csv-lenient")
    run.add_argument("--ledger", metavar="PATH", default=None,
                     help="SQLite job ledger (report timeline, refresh validators); default DEST/_jobs/ledger.sqlite "
                          "for a local DEST, none for s3:// unless given")
    run.add_argument("--on-missing", choices=("fail", "skip"), default="fail",
                     help="a 404/410 file: fail its group (default), or skip it, store the group from the rest and "
                          "name the missing URLs in the results (groups naming on_missing keep theirs)")
    run.add_argument("--refresh", action="store_true",
                     help="re-check groups already stored against the origin; rewrite only those that changed")
    _add_run_options(run)

    demo = commands.add_parser("demo", help="run a sample job against a built-in origin on 127.0.0.1")
    demo.add_argument("--out", default="fanfetch-demo-output", metavar="DIR",
                      help="where the merged station files go (default ./fanfetch-demo-output)")
    demo.add_argument("--stations", type=positive_int, default=200, help="number of stations (default 200)")
    demo.add_argument("--latency-ms", type=latency_ms, default=50, help="origin latency per request (default 50)")
    demo.add_argument("--concurrency", type=concurrency, default=32, help="downloads in flight (default 32)")
    demo.add_argument("--port", type=port_number, default=None,
                      help="the sample origin's port on 127.0.0.1 (default 47831: the same URLs, so the same job "
                           "id, every run)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    _add_politeness_options(demo)
    add_plan_parser(commands)
    add_report_parser(commands)
    add_ops_parsers(commands)
    return parser


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
    store = build_store(dest, endpoint_url=endpoint_url)
    # A local destination keeps its own ledger (DEST/_jobs/ledger.sqlite): report timeline, refresh validators.
    if ledger_path is None and isinstance(store, LocalStore):
        ledger_path = default_ledger_path(dest)
    ledger, ledger_problems = _open_ledger(ledger_path)
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
    spool_dir = store.ensure_tmp_dir() if isinstance(store, LocalStore) else None
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


def _open_ledger(path: str | None) -> tuple[SqliteLedger | None, list[str]]:
    if path is None:
        return None, []
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return SqliteLedger(path), []
    except (FanfetchError, OSError) as exc:
        return None, [f"ledger {path} does not open: {exc}"]


def _command_run(args: argparse.Namespace, console: Console) -> int:
    # an s3:// destination's prefix counts against S3's key limit; a local folder's does not
    prefix = args.out.split("/", 3)[3] if args.out.startswith("s3://") and args.out.count("/") >= 3 else ""
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


def _command_demo(args: argparse.Namespace, console: Console) -> int:
    from fanfetch.cli.demo import run_demo

    return run_demo(out=args.out, stations=args.stations, latency_s=args.latency_ms / 1000,
                    concurrency=args.concurrency, console=console, quiet=args.quiet,
                    per_host_concurrency=args.per_host_concurrency, per_host_rps=args.per_host_rps, port=args.port)


def main(argv: Sequence[str] | None = None, *, console: Console | None = None, ops_deps: OpsDeps | None = None) -> int:
    """The ``fanfetch`` command. Tests pass a recording ``console`` and ``ops_deps`` (an in-process producer
    instead of Lambda's invoke, a worker without signal handlers) and otherwise run exactly this."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = console or Console(soft_wrap=True)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        code = run_ops_command(args, console, deps=ops_deps)
        if code is not None:
            return code
        if args.command == "plan":
            return command_plan(args, console)
        if args.command == "report":
            return command_report(args, console)
        if args.command == "run":
            return _command_run(args, console)
        return _command_demo(args, console)
    except InputError as exc:  # one line per problem (a manifest may list up to 20)
        for line in str(exc).splitlines() or [""]:
            errors.print(f"fanfetch: error: {line}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_USAGE
    except FanfetchError as exc:  # an operation failed (AWS, ledger, store): say what, no traceback
        errors.print(f"fanfetch: {exc}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        errors.print("fanfetch: aborted", highlight=False)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback (unless asked)
        if os.environ.get("FANFETCH_DEBUG"):
            raise
        if _is_aws_setup_error(exc):  # no region, no credentials, no such profile: the environment, like a flag
            errors.print(f"fanfetch: error: AWS configuration: {exc}", highlight=False, markup=False)
            return EXIT_USAGE
        errors.print(f"fanfetch: {type(exc).__name__}: {exc} (FANFETCH_DEBUG=1 shows the traceback)",
                     highlight=False, markup=False, soft_wrap=True)
        return EXIT_FAILED


_AWS_SETUP_ERRORS = frozenset({"NoRegionError", "NoCredentialsError", "PartialCredentialsError", "ProfileNotFound",
                               "InvalidRegionError", "InvalidConfigError"})


def _is_aws_setup_error(exc: BaseException) -> bool:
    """botocore's configuration errors, by name: the CLI must start without importing botocore."""
    return type(exc).__module__.startswith("botocore") and type(exc).__name__ in _AWS_SETUP_ERRORS


if __name__ == "__main__":
    sys.exit(main())

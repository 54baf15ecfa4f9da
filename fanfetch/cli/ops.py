"""The operations commands of ``fanfetch``: ``submit``, ``status``, ``failures``, ``finish``, ``redrive`` against a
deployed stack (found by ``--stack NAME``); ``worker`` (cli/worker_command.py) is dispatched here too.

Exit codes: 0 ok; 1 the job has failures, or an operation failed; 2 bad usage, unknown job or stack.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from fanfetch.adapters.manifests import load_job
from fanfetch.app.ops import (
    JobProgress,
    announce_job,
    list_failures,
    read_progress,
    submit_manifest,
    watch_progress,
)
from fanfetch.cli.args import add_common_flags, merge_mode, seconds
from fanfetch.cli.worker_command import add_worker_parser, command_worker
from fanfetch.core.ledger import GroupRecord
from fanfetch.core.locations import parse_s3_uri
from fanfetch.core.models import MergeMode
from fanfetch.core.units import format_bytes, plural
from fanfetch.errors import FanfetchError, InputError
from fanfetch.ports import InvocationFailed, Invoker, Ledger, ObjectStore

if TYPE_CHECKING:  # botocore-backed modules load when an ops command runs, not at every `fanfetch` start
    from fanfetch.adapters.stack_outputs import StackOutputs

__all__ = ["OPS_COMMANDS", "OpsDeps", "add_ops_parsers", "run_ops_command"]

OPS_COMMANDS = ("submit", "status", "failures", "finish", "redrive", "worker")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _aws_client(service: str, endpoint_url: str | None, *, max_attempts: int | None = None) -> Any:
    from fanfetch.bootstrap.aws import aws_client, aws_config

    config = aws_config() if max_attempts is None else aws_config(max_attempts=max_attempts)
    return aws_client(service, endpoint_url=endpoint_url, config=config)


def _lambda_invoker(endpoint_url: str | None) -> Invoker:
    from fanfetch.bootstrap.stack import build_invoker

    return build_invoker(endpoint_url)


def _dynamodb_ledger(stack: StackOutputs, endpoint_url: str | None) -> Ledger:
    from fanfetch.bootstrap.stack import build_stack_ledger

    return build_stack_ledger(stack, endpoint_url)


@dataclass(frozen=True)
class OpsDeps:
    """What the ops commands build their adapters with; tests replace a part (an in-process producer,
    a ledger) and keep the rest real against moto's server."""

    aws: Callable[..., Any] = _aws_client  # (service, endpoint_url, *, max_attempts=None) -> boto3 client
    invoker: Callable[[str | None], Invoker] = _lambda_invoker
    ledger: Callable[[StackOutputs, str | None], Ledger] = _dynamodb_ledger
    now: Callable[[], float] = time.time  # epoch seconds, as the ledger's timestamps
    sleep: Callable[[float], None] = time.sleep  # between --watch refreshes
    handle_signals: bool = True  # worker: SIGTERM/SIGINT stop it gracefully (main thread only)


# --- parsers -----------------------------------------------------------------------------------


def add_ops_parsers(subparsers: Any) -> None:
    """Add ``submit``, ``status``, ``failures``, ``finish``, ``redrive`` and ``worker`` to ``fanfetch``."""
    submit = subparsers.add_parser("submit", help="upload a manifest to a deployed stack and start the job")
    submit.add_argument("manifest", help="JSON Lines, CSV or TOML job spec (a path, or s3://bucket/key)")
    submit.add_argument("--merge", type=merge_mode, default=MergeMode.CONCAT,
                        help="merge mode for groups that do not name one: csv, concat (default), none, csv-lenient")
    add_common_flags(submit)

    status = subparsers.add_parser("status", help="a job's progress, from the stack's ledger")
    status.add_argument("job", help="the job id (printed by submit)")
    status.add_argument("--watch", action="store_true", help="a live progress bar until the job finishes")
    status.add_argument("--interval-s", type=seconds, default=2.0, help="--watch refresh interval (default 2)")
    add_common_flags(status)

    failures = subparsers.add_parser("failures", help="a job's failed groups and why they failed")
    failures.add_argument("job", help="the job id")
    add_common_flags(failures)

    finish = subparsers.add_parser(
        "finish", help="write a finished job's results again and re-publish \"Job Finished\" (if it was lost)")
    finish.add_argument("job", help="the job id")
    add_common_flags(finish)

    redrive = subparsers.add_parser("redrive", help="move the stack's dead letters back to its work queue")
    add_common_flags(redrive)

    add_worker_parser(subparsers)


# --- commands ----------------------------------------------------------------------------------


def run_ops_command(args: argparse.Namespace, console: Console, *, deps: OpsDeps | None = None) -> int | None:
    """Run ``args.command`` if it is an ops command and return its exit code; None otherwise."""
    command = getattr(args, "command", None)
    if command not in OPS_COMMANDS:
        return None
    from botocore.exceptions import (
        BotoCoreError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    aws_setup_errors = (NoRegionError, NoCredentialsError, PartialCredentialsError, ProfileNotFound)
    deps = deps or OpsDeps()
    errors = Console(stderr=True, soft_wrap=True)
    try:
        return int(_COMMANDS[command](args, console, deps))
    except InvocationFailed as exc:
        first, *rest = exc.message.splitlines() or [""]  # a pre-flight or manifest names each problem on a line
        errors.print(f"fanfetch: {exc.function_name} failed: {exc.error_type}: {first}", highlight=False, markup=False)
        for line in rest:
            errors.print(f"fanfetch: error: {line}", highlight=False, markup=False)
        return EXIT_USAGE if exc.is_input_error else EXIT_FAILED
    except InputError as exc:
        errors.print(f"fanfetch: error: {exc}", highlight=False, markup=False)

        return EXIT_USAGE
    except FanfetchError as exc:
        errors.print(f"fanfetch: {exc}", highlight=False, markup=False)

        return EXIT_FAILED
    except aws_setup_errors as exc:  # no region, no credentials: the user's environment, like a bad flag
        errors.print(f"fanfetch: error: AWS configuration: {exc}", highlight=False, markup=False)

        return EXIT_USAGE
    except BotoCoreError as exc:  # an endpoint we could not reach, and such: adapters translate the rest
        errors.print(f"fanfetch: {type(exc).__name__}: {exc}", highlight=False, markup=False)

        return EXIT_FAILED


def _stack(args: argparse.Namespace, deps: OpsDeps) -> StackOutputs:
    from fanfetch.bootstrap.stack import find_stack

    return find_stack(args.stack, cfn_client=deps.aws("cloudformation", args.endpoint_url))


def _s3_store(client: Any, bucket: str, prefix: str = "") -> ObjectStore:
    from fanfetch.bootstrap.stack import build_s3_store

    return build_s3_store(bucket, prefix, s3_client=client)


def _print_json(console: Console, value: object) -> None:
    console.out(json.dumps(value), highlight=False)  # one line, no markup or wrapping: for scripts


def _submit(args: argparse.Namespace, console: Console, deps: OpsDeps) -> int:
    # validate first, with the loader of `fanfetch run`: a bad manifest never reaches (or needs) the stack
    job = load_job(args.manifest, default_merge=args.merge, s3_client=lambda: deps.aws("s3", args.endpoint_url))
    stack = _stack(args, deps)
    s3 = deps.aws("s3", args.endpoint_url)
    result = submit_manifest(job, args.manifest, merge=args.merge, bucket=stack.bucket,
                             producer_function=stack.producer_function, store=_s3_store(s3, stack.bucket),
                             invoker=deps.invoker(args.endpoint_url))
    if args.json:
        _print_json(console, dict(result.producer_response))
    else:
        console.print(f"job {result.job_id}: {plural(result.groups, 'group')}, "
                      f"{plural(result.messages, 'message')} enqueued (manifest {result.manifest_uri})",
                      highlight=False, markup=False)

        console.print(f"follow it: fanfetch status {result.job_id} --stack {stack.name} --watch",
            highlight=False, markup=False)
    return EXIT_OK


def _describe(progress: JobProgress) -> str:
    j = progress.job
    eta = f", ETA {progress.eta_s:,.0f} s" if progress.eta_s is not None else ""
    return (f"job {j.job_id} {progress.state}: {j.done:,}/{j.total_groups:,} groups "
            f"({j.ok:,} ok, {j.failed:,} failed), "
            f"{j.files:,}/{j.total_files:,} files, {format_bytes(j.bytes)}; {progress.groups_per_s:,.2f} groups/s, "
            f"{format_bytes(progress.bytes_per_s)}/s over {progress.elapsed_s:,.0f} s{eta}"
            + "".join(f"\n  {note}" for note in progress.notes()))


def _status_exit(progress: JobProgress) -> int:
    return EXIT_FAILED if progress.finished and progress.job.failed else EXIT_OK


def _queued(stack: StackOutputs, args: argparse.Namespace, deps: OpsDeps) -> int | None:
    """Messages in the work queue (visible, in flight, delayed); None when SQS cannot say."""
    from fanfetch.bootstrap.stack import build_queue_at

    return build_queue_at(stack.queue_url, sqs_client=deps.aws("sqs", args.endpoint_url)).depth()


def _status(args: argparse.Namespace, console: Console, deps: OpsDeps) -> int:
    stack = _stack(args, deps)
    ledger = deps.ledger(stack, args.endpoint_url)
    if not args.watch:
        progress = read_progress(ledger, args.job, now=deps.now())
        if not progress.finished:  # with the queue's depth it can tell groups never enqueued
            progress = dataclasses.replace(progress, queued=_queued(stack, args, deps))
    else:
        progress = _watch(ledger, args, console, deps)
    if args.json:
        _print_json(console, progress.to_dict())
    else:
        console.print(_describe(progress), highlight=False, markup=False)

    return _status_exit(progress)


def _watch(ledger: Ledger, args: argparse.Namespace, console: Console, deps: OpsDeps) -> JobProgress:
    fields = "[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/] {task.fields[rest]}"
    bar = Progress(TextColumn("[bold]groups"), BarColumn(), MofNCompleteColumn(), TextColumn(fields),
                   console=console, disable=not console.is_terminal or args.json, auto_refresh=False)
    task = bar.add_task("groups", total=None, ok=0, failed=0, rest="")

    def show(progress: JobProgress) -> None:
        j = progress.job
        eta = f" ETA {progress.eta_s:,.0f} s" if progress.eta_s is not None else ""
        bar.update(task, total=j.total_groups, completed=j.done, ok=f"{j.ok:,}", failed=f"{j.failed:,}",
                   rest=f"{j.files:,} files {format_bytes(j.bytes)} {format_bytes(progress.bytes_per_s)}/s{eta}")
        bar.refresh()

    with bar:
        return watch_progress(ledger, args.job, now=deps.now, sleep=deps.sleep, interval_s=args.interval_s,
                              on_update=show)


def _failure_row(group: GroupRecord) -> dict[str, object]:
    return {"group": group.group_id, "key": group.key, "attempts": group.attempts, "error": group.error or ""}


def _failures(args: argparse.Namespace, console: Console, deps: OpsDeps) -> int:
    ledger = deps.ledger(_stack(args, deps), args.endpoint_url)
    job, failed = list_failures(ledger, args.job)
    if args.json:
        _print_json(console, {"job_id": job.job_id, "failed": [_failure_row(g) for g in failed]})
    elif not failed:
        console.print(f"job {job.job_id}: no failed groups ({job.ok:,} ok of {job.total_groups:,})",
            highlight=False, markup=False)
    else:
        table = Table(title=f"job {job.job_id}: {len(failed):,} failed groups", title_justify="left")
        for column in ("group", "key", "attempts", "error"):
            table.add_column(column, overflow="fold")
        for group in failed:
            table.add_row(*(str(v) for v in _failure_row(group).values()))
        console.print(table)
    return EXIT_FAILED if failed else EXIT_OK


def _worker_output_prefix(stack: StackOutputs, args: argparse.Namespace, deps: OpsDeps) -> str:
    """The worker function's ``OUTPUT_PREFIX`` (the stack's outputs do not carry it)."""
    from fanfetch.bootstrap.stack import build_functions

    try:
        variables = build_functions(lambda_client=deps.aws("lambda", args.endpoint_url)).variables(
            stack.worker_function)
    except FanfetchError as exc:
        raise FanfetchError(f"job {args.job!r} has no results location and the worker's OUTPUT_PREFIX cannot be "
                            f"read from {stack.worker_function}: {exc}") from exc
    return variables.get("OUTPUT_PREFIX", "")


def _finish(args: argparse.Namespace, console: Console, deps: OpsDeps) -> int:
    from fanfetch.app.jobs import results_key_for
    from fanfetch.bootstrap.stack import build_job_events

    stack = _stack(args, deps)
    s3 = deps.aws("s3", args.endpoint_url)

    def store_for(location: str) -> tuple[Any, str]:
        if location.startswith("s3://"):
            bucket, key = parse_s3_uri(location)
            return _s3_store(s3, bucket), key
        # a job without a recorded location: where the worker writes it (its OUTPUT_PREFIX, the encoded job folder)
        return _s3_store(s3, stack.bucket, _worker_output_prefix(stack, args, deps)), results_key_for(args.job)

    job = announce_job(deps.ledger(stack, args.endpoint_url), args.job, store_for=store_for,
                       events=build_job_events(endpoint_url=args.endpoint_url))
    if args.json:
        _print_json(console, job.to_summary(results_location=job.results_location))
    else:
        console.print(f"job {job.job_id}: results written to {job.results_location or stack.bucket} and "
                      f"\"Job Finished\" published again ({job.ok:,} ok, {job.failed:,} failed)",
                          highlight=False, markup=False)
    return EXIT_OK


def _redrive(args: argparse.Namespace, console: Console, deps: OpsDeps) -> int:
    from fanfetch.bootstrap.stack import build_redrive

    stack = _stack(args, deps)
    mover = build_redrive(deps.aws("sqs", args.endpoint_url),
                          move_client=deps.aws("sqs", args.endpoint_url, max_attempts=1))
    report = mover.redrive(dlq_url=stack.dlq_url, queue_url=stack.queue_url)
    if args.json:
        _print_json(console, report.to_dict())
    elif report.method == "move-task":
        console.print(f"SQS is moving about {report.moved:,} messages back to the work queue (task "
                      f"{report.task_handle})", highlight=False, markup=False)

    else:
        console.print(f"moved {plural(report.moved, 'message')} back to the work queue"
                      + (f"; {report.failed:,} could not be sent and stay in the DLQ" if report.failed else "")
                      + (f"; {report.not_deleted:,} sent but not deleted (now in both queues)"
                         if report.not_deleted else ""), highlight=False, markup=False)

    return EXIT_FAILED if report.failed else EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console, OpsDeps], int]] = {
    "submit": _submit, "status": _status, "failures": _failures, "finish": _finish, "redrive": _redrive,
    "worker": lambda args, console, deps: command_worker(args, console, handle_signals=deps.handle_signals),
}

"""The operations commands of ``fanfetch``: ``submit``, ``status``, ``failures``, ``redrive`` against a
deployed stack (found by ``--stack NAME``), and ``worker``, a long-running queue poller.

Exit codes: 0 ok; 1 the job has failures, or an operation failed; 2 bad usage, unknown job or stack.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

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
from fanfetch.cli.args import (
    allow_host,
    concurrency,
    destination,
    endpoint_url,
    merge_mode,
    positive_float,
    positive_int,
    seconds,
)
from fanfetch.core.ledger import GroupRecord
from fanfetch.core.locations import parse_s3_uri
from fanfetch.core.models import MergeMode, OnMissing
from fanfetch.core.units import format_bytes, plural
from fanfetch.errors import FanfetchError, InputError
from fanfetch.ports import InvocationFailed, Invoker, Ledger, ObjectStore
from fanfetch.settings import Settings

if TYPE_CHECKING:  # botocore-backed modules load when an ops command runs, not at every `fanfetch` start
    from fanfetch.adapters.stack_outputs import StackOutputs
    from fanfetch.cli.worker import WorkerOptions

__all__ = ["OPS_COMMANDS", "OpsDeps", "add_ops_parsers", "run_ops_command", "worker_options"]

T = TypeVar("T")
OPS_COMMANDS = ("submit", "status", "failures", "finish", "redrive", "worker")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _aws_client(service: str, endpoint_url: str | None, *, max_attempts: int | None = None) -> Any:
    from fanfetch.bootstrap import aws_client, aws_config

    config = aws_config() if max_attempts is None else aws_config(max_attempts=max_attempts)
    return aws_client(service, endpoint_url=endpoint_url, config=config)


def _lambda_invoker(endpoint_url: str | None) -> Invoker:
    from fanfetch.bootstrap import build_invoker

    return build_invoker(endpoint_url)


def _dynamodb_ledger(stack: StackOutputs, endpoint_url: str | None) -> Ledger:
    from fanfetch.bootstrap import build_stack_ledger

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


def _wait_time(text: str) -> int:
    value = int(seconds(text))
    if value > 20:
        raise argparse.ArgumentTypeError("SQS long polling waits at most 20 s")
    return value


def _common(parser: argparse.ArgumentParser, *, stack: bool = True) -> None:
    if stack:
        parser.add_argument("--stack", required=True, metavar="NAME", help="the deployed stack's name")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")
    parser.add_argument("--endpoint-url", type=endpoint_url, default=os.environ.get("AWS_ENDPOINT_URL") or None,
                        help="AWS-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)")


def add_ops_parsers(subparsers: Any) -> None:
    """Add ``submit``, ``status``, ``failures``, ``finish``, ``redrive`` and ``worker`` to ``fanfetch``."""
    submit = subparsers.add_parser("submit", help="upload a manifest to a deployed stack and start the job")
    submit.add_argument("manifest", help="JSON Lines, CSV or TOML job spec (a path, or s3://bucket/key)")
    submit.add_argument("--merge", type=merge_mode, default=MergeMode.CONCAT,
                        help="merge mode for groups that do not name one: csv, concat (default), none, csv-lenient")
    _common(submit)

    status = subparsers.add_parser("status", help="a job's progress, from the stack's ledger")
    status.add_argument("job", help="the job id (printed by submit)")
    status.add_argument("--watch", action="store_true", help="a live progress bar until the job finishes")
    status.add_argument("--interval-s", type=seconds, default=2.0, help="--watch refresh interval (default 2)")
    _common(status)

    failures = subparsers.add_parser("failures", help="a job's failed groups and why they failed")
    failures.add_argument("job", help="the job id")
    _common(failures)

    finish = subparsers.add_parser(
        "finish", help="write a finished job's results again and re-publish \"Job Finished\" (if it was lost)")
    finish.add_argument("job", help="the job id")
    _common(finish)

    redrive = subparsers.add_parser("redrive", help="move the stack's dead letters back to its work queue")
    _common(redrive)

    worker = subparsers.add_parser(
        "worker", help="a long-running worker draining an SQS queue (EC2/ECS)",
        description="Drains the work queue with the worker Lambda's code. Configured like the Lambda, from its "
                    "environment (QUEUE_URL, BUCKET_NAME, OUTPUT_PREFIX, DLQ_URL, LEDGER_TABLE, EVENT_BUS_NAME, "
                    "FANFETCH_*); a flag overrides its variable.")
    worker.add_argument("--queue-url", default=None, help="the work queue (default $QUEUE_URL)")
    where = worker.add_mutually_exclusive_group()
    where.add_argument("--bucket", help="store outputs in this S3 bucket, as the stack's worker does (default "
                                        "$BUCKET_NAME)")
    where.add_argument("--out", type=destination, metavar="DEST",
                       help="store outputs in s3://bucket/prefix or a local folder instead")
    worker.add_argument("--output-prefix", default=None, metavar="PREFIX",
                        help="with --bucket: prepended to every output key (default $OUTPUT_PREFIX)")
    worker.add_argument("--concurrency", type=concurrency, default=None,
                        help="downloads in flight (default $FANFETCH_CONCURRENCY, else 16)")
    worker.add_argument("--groups-in-flight", type=positive_int, default=None,
                        help="groups of a batch processed at once (default $FANFETCH_GROUPS_IN_FLIGHT, else 10)")
    worker.add_argument("--dlq-url", default=None,
                        help="dead-letter queue for failures that cannot succeed, with their reason (default $DLQ_URL)")
    worker.add_argument("--max-receive-count", type=positive_int, default=None,
                        help="the queue's redrive maxReceiveCount (default $FANFETCH_MAX_RECEIVE_COUNT, else 5)")
    worker.add_argument("--per-host-concurrency", type=positive_int, default=None, metavar="N",
                        help="at most N requests in flight to any one host (default $FANFETCH_PER_HOST_CONCURRENCY, "
                             "else no cap)")
    worker.add_argument("--per-host-rps", type=positive_float, default=None, metavar="R",
                        help="at most R requests per second to any one host, slower on 429/503 (default "
                             "$FANFETCH_PER_HOST_RPS, else no limit)")
    worker.add_argument("--ledger-table", default=None,
                        help="count verdicts in this DynamoDB job ledger (the stack's LedgerTableName), so "
                             "`fanfetch status` sees them and the job finishes (default $LEDGER_TABLE)")
    worker.add_argument("--event-bus-name", default=None,
                        help="where \"Job Finished\" is published (default $EVENT_BUS_NAME, else default)")
    worker.add_argument("--allow-host", type=allow_host, action="append", default=[], metavar="HOST[:PORT]",
                        help="allow downloads from this otherwise refused (private/loopback) host; repeatable "
                             "(added to $FANFETCH_ALLOW_HOSTS)")
    worker.add_argument("--wait-time-s", type=_wait_time, default=20, help="long-poll wait, 0-20 (default 20)")
    worker.add_argument("--visibility-timeout-s", type=positive_int, default=None,
                        help="visibility kept by the heartbeat (default: the queue's)")
    worker.add_argument("--max-messages", type=positive_int, default=None,
                        help="exit after receiving this many messages")
    worker.add_argument("--on-missing", choices=("fail", "skip"), default=None,
                        help="a 404/410 file of a group whose message names no on_missing: fail the group or skip "
                             "it (default $FANFETCH_ON_MISSING, else fail)")
    worker.add_argument("--idle-exit-s", type=seconds, default=None,
                        help="exit after this many seconds without a message")
    _common(worker, stack=False)


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
    from fanfetch.bootstrap import find_stack

    return find_stack(args.stack, cfn_client=deps.aws("cloudformation", args.endpoint_url))


def _s3_store(client: Any, bucket: str, prefix: str = "") -> ObjectStore:
    from fanfetch.bootstrap import build_s3_store

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
    from botocore.exceptions import BotoCoreError, ClientError

    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    try:
        attributes = deps.aws("sqs", args.endpoint_url).get_queue_attributes(
            QueueUrl=stack.queue_url, AttributeNames=names)["Attributes"]
    except (BotoCoreError, ClientError):
        return None
    return sum(int(attributes.get(name, 0)) for name in names)


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
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        config = deps.aws("lambda", args.endpoint_url).get_function_configuration(FunctionName=stack.worker_function)
    except (BotoCoreError, ClientError) as exc:
        raise FanfetchError(f"job {args.job!r} has no results location and the worker's OUTPUT_PREFIX cannot be "
                            f"read from {stack.worker_function}: {type(exc).__name__}: {exc}") from exc
    return str(config.get("Environment", {}).get("Variables", {}).get("OUTPUT_PREFIX", ""))


def _finish(args: argparse.Namespace, console: Console, deps: OpsDeps) -> int:
    from fanfetch.app.jobs import results_key_for
    from fanfetch.bootstrap import build_job_events

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
    from fanfetch.bootstrap import build_redrive

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


def _worker(args: argparse.Namespace, console: Console, deps: OpsDeps) -> int:
    from fanfetch.cli.worker import serve

    options = worker_options(args, os.environ)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for chatty in ("botocore", "boto3", "urllib3"):  # "Found credentials in environment variables." and such
            logging.getLogger(chatty).setLevel(logging.WARNING)
    summary = serve(options, handle_signals=deps.handle_signals)
    if args.json:
        _print_json(console, summary.to_dict())
    else:
        console.print(f"worker stopped ({summary.reason}): {plural(summary.received, 'message')} in "
                      f"{plural(summary.batches, 'batch', 'batches')}, {summary.deleted:,} done, "
                      f"{summary.returned:,} returned for retry, "
                      f"{summary.dead_lettered:,} dead-lettered", highlight=False, markup=False)

    return EXIT_OK


def worker_options(args: argparse.Namespace, env: Mapping[str, str]) -> WorkerOptions:
    """The worker's options: each flag, else the variable the worker Lambda reads, else its default."""
    from fanfetch.cli.worker import PollSettings, WorkerOptions

    settings = Settings.from_env(env)  # every malformed FANFETCH_* variable named in one error

    def pick(flag: T | None, configured: T) -> T:
        return flag if flag is not None else configured

    queue_url = args.queue_url or settings.queue_url
    if not queue_url:
        raise InputError("no work queue: give --queue-url or set QUEUE_URL (the stack's QueueUrl)")
    if args.out:
        dest = args.out
    elif args.bucket or settings.bucket_name:
        prefix = pick(args.output_prefix, settings.output_prefix).strip("/")
        dest = f"s3://{args.bucket or settings.bucket_name}/{prefix}".rstrip("/")
    else:
        raise InputError("no destination: give --bucket (or set BUCKET_NAME, the stack's BucketName) or --out")
    poll = PollSettings(wait_time_s=args.wait_time_s, groups_in_flight=pick(args.groups_in_flight,
                                                                              settings.groups_in_flight),
                        max_receive_count=pick(args.max_receive_count, settings.max_receive_count),
                        visibility_timeout_s=args.visibility_timeout_s, max_messages=args.max_messages,
                        idle_exit_s=args.idle_exit_s, on_missing=OnMissing(pick(args.on_missing, settings.on_missing)))
    return WorkerOptions(queue_url=queue_url, dest=dest, concurrency=pick(args.concurrency, settings.concurrency),
                         dlq_url=args.dlq_url or settings.dlq_url or None,
                         allow_hosts=tuple(args.allow_host) + settings.allow_hosts, endpoint_url=args.endpoint_url,
                         max_file_bytes=settings.max_file_bytes, poll=poll,
                         ledger_table=args.ledger_table or settings.ledger_table or None,
                         event_bus_name=args.event_bus_name or settings.event_bus_name,
                         per_host_concurrency=pick(args.per_host_concurrency, settings.per_host_concurrency),
                         per_host_rps=pick(args.per_host_rps, settings.per_host_rps))


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console, OpsDeps], int]] = {
    "submit": _submit, "status": _status, "failures": _failures, "finish": _finish, "redrive": _redrive,
    "worker": _worker,
}

"""The ``fanfetch worker`` command: its flags, each defaulting to the variable the worker Lambda reads
(``worker_options``), and the summary it prints when the long-running poller (cli/worker.py) stops."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console

from fanfetch.cli.args import (
    add_common_flags,
    allow_host,
    concurrency,
    destination,
    positive_float,
    positive_int,
    seconds,
)
from fanfetch.core.models import OnMissing
from fanfetch.core.units import plural
from fanfetch.errors import InputError
from fanfetch.settings import Settings

if TYPE_CHECKING:  # the poller loads botocore: only when the command runs, not at every `fanfetch` start
    from fanfetch.cli.worker import WorkerOptions

__all__ = ["add_worker_parser", "command_worker", "worker_options"]

T = TypeVar("T")


def _wait_time(text: str) -> int:
    value = int(seconds(text))
    if value > 20:
        raise argparse.ArgumentTypeError("SQS long polling waits at most 20 s")
    return value


def add_worker_parser(subparsers: Any) -> None:
    """Add ``worker`` to ``fanfetch``."""
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
    add_common_flags(worker, stack=False)


def command_worker(args: argparse.Namespace, console: Console, *, handle_signals: bool = True) -> int:
    """Run ``fanfetch worker`` until the poller stops; print what it did. Returns the exit code (0)."""
    from fanfetch.cli.worker import serve

    options = worker_options(args, os.environ)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for chatty in ("botocore", "boto3", "urllib3"):  # "Found credentials in environment variables." and such
            logging.getLogger(chatty).setLevel(logging.WARNING)
    summary = serve(options, handle_signals=handle_signals)
    if args.json:
        console.out(json.dumps(summary.to_dict()), highlight=False)  # one line, for scripts
    else:
        console.print(f"worker stopped ({summary.reason}): {plural(summary.received, 'message')} in "
                      f"{plural(summary.batches, 'batch', 'batches')}, {summary.deleted:,} done, "
                      f"{summary.returned:,} returned for retry, "
                      f"{summary.dead_lettered:,} dead-lettered", highlight=False, markup=False)

    return 0


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

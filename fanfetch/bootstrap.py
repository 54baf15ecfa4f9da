"""The composition root: the only place real clients and adapters are built.

Clients are created lazily (on first use, never at import time) so ``moto.mock_aws`` can stand
in for AWS in tests, and a warm Lambda container reuses one HTTP pool and one set of clients.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fanfetch.adapters.clock import SystemClock
from fanfetch.adapters.guard import AddressGuard
from fanfetch.adapters.http_settings import HttpSettings
from fanfetch.adapters.local_store import LocalStore
from fanfetch.app.services import GroupContext
from fanfetch.app.spool import SpoolBudget
from fanfetch.app.worker import JobBook
from fanfetch.core.ledger import Validator
from fanfetch.core.locations import parse_s3_uri
from fanfetch.core.redact import configure_secret_params, parse_secret_params
from fanfetch.errors import InputError
from fanfetch.ports import Clock, ManifestReader, ObjectStore
from fanfetch.settings import Settings, aws_region

if TYPE_CHECKING:  # boto3-backed adapters are imported where they are built, so `fanfetch run` into a
    # local folder never pays boto3's import time; pycurl likewise loads when the fetcher is built
    from fanfetch.adapters.call_deadline import CallDeadline
    from fanfetch.adapters.curl_fetcher import CurlFetcher
    from fanfetch.adapters.events import EventBridgeEvents
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
    from fanfetch.adapters.ledger_sqlite import SqliteLedger
    from fanfetch.adapters.sqs import SqsQueue
    from fanfetch.adapters.stack_outputs import StackOutputs
    from fanfetch.ports import DeadLetterMover, Invoker, Ledger

__all__ = ["aws_config", "aws_client", "worst_call_s", "lambda_invoke_client", "bookkeeping_config",
           "bookkeeping_need_s", "build_fetcher", "configure_redaction",
           "build_store", "build_group_context", "WorkerApp", "build_worker_app", "build_queue", "build_ledger",
           "guard_resolver", "build_output_store", "build_manifest_reader",
           "open_local_ledger", "build_table_ledger", "build_job_events", "Destination", "build_destination",
           "build_clock", "build_dead_letters", "local_ledger_path", "open_ledger_file", "find_stack",
           "build_stack_ledger", "build_s3_store", "build_invoker", "build_redrive"]


# Every AWS call has a known worst case (issue 8): botocore's "standard" retry mode (AWS's documented
# default; "adaptive" is experimental and adds client-side rate limiting), a bounded number of attempts and
# explicit timeouts instead of botocore's 60 s connect / 60 s read.
AWS_MAX_ATTEMPTS = 3  # total attempts per call, the first included (standard mode's own default)
AWS_CONNECT_TIMEOUT_S = 5.0
AWS_READ_TIMEOUT_S = 30.0  # above SQS long polling's longest wait (20 s); S3 parts stream within it
# The worker's bookkeeping calls (DynamoDB, DLQ sends, EventBridge, failure records, results) have their own
# timeouts and attempts (Settings.bookkeeping_*: 2 s connect, 5 s read, 3 attempts unless set), short enough that
# each attempt, checked against the time left first (adapters/call_deadline.py), fits with the pause that may
# follow it (13 s, 14 s, 9 s for attempts 1-3) within the 15 s FANFETCH_DEADLINE_RESERVE_S kept after the downloads.
BOOKKEEPING_LOOP_PAUSE_S = 2.0  # the longest pause of our own retry loops (ledger conflicts, PutEvents, S3 409)
# botocore standard mode pauses after attempt n at most min(2**(n-1), 20) s (throttling scale), raised by an
# x-amz-retry-after header to at most 5 s more (botocore/retries/standard.py ExponentialBackoff)
_STANDARD_MAX_BACKOFF_S = 20.0
_RETRY_AFTER_EXTRA_S = 5.0
LAMBDA_MAX_TIMEOUT_S = 900  # no Lambda function runs longer


def aws_config(
    *,
    read_timeout_s: float = AWS_READ_TIMEOUT_S,
    connect_timeout_s: float = AWS_CONNECT_TIMEOUT_S,
    max_attempts: int = AWS_MAX_ATTEMPTS,
    tcp_keepalive: bool = False,
) -> Any:
    """botocore ``Config``: standard retries, ``max_attempts`` in all, explicit timeouts, a pool for our threads."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                  connect_timeout=connect_timeout_s, read_timeout=read_timeout_s, max_pool_connections=64,
                  tcp_keepalive=tcp_keepalive)


def worst_call_s(config: Any) -> float:
    """The longest one call through a client with ``config`` can take: every attempt timing out on connect
    and read, plus the largest pauses between attempts."""
    attempts = int(config.retries["total_max_attempts"])
    pauses = sum(min(2.0 ** (n - 1), _STANDARD_MAX_BACKOFF_S) + _RETRY_AFTER_EXTRA_S for n in range(1, attempts))
    return attempts * (float(config.connect_timeout) + float(config.read_timeout)) + pauses


def aws_client(service: str, *, endpoint_url: str | None = None, config: Any = None) -> Any:
    """A boto3 client (``config``: ``aws_config()`` unless given) in the region the AWS CLI would use."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url or None, config=config or aws_config(),
                        region_name=aws_region(os.environ))


def lambda_invoke_client(read_timeout_s: float, *, endpoint_url: str | None = None) -> Any:
    """A Lambda client for one synchronous ``Invoke`` that must run the function at most once: a single
    attempt (a retried Invoke runs the function again), a read timeout above the function's own timeout
    (botocore's 60 s default made a longer producer run be invoked again and again), and TCP keep-alive so
    a NAT or firewall does not drop the silent connection while the function runs."""
    return aws_client("lambda", endpoint_url=endpoint_url,
                      config=aws_config(read_timeout_s=read_timeout_s, max_attempts=1, tcp_keepalive=True))


def configure_redaction(env: Mapping[str, str] | None = None) -> None:
    """Redact the query parameters FANFETCH_REDACT_PARAMS names too, in every sink of this process (the producer
    calls it for itself; every process that downloads, through ``build_fetcher``)."""
    configure_secret_params(parse_secret_params((os.environ if env is None else env).get("FANFETCH_REDACT_PARAMS",
                                                                                        "")))


def build_fetcher(
    *,
    concurrency: int,
    allow_hosts: tuple[str, ...] = (),
    max_file_bytes: int | None = None,
    per_host_concurrency: int | None = None,
    per_host_rps: float | None = None,
    clock: Clock | None = None,
) -> CurlFetcher:
    """One libcurl fetcher (connections ≥ concurrency) behind the SSRF guard, polite per host when asked."""
    from fanfetch.adapters.curl_fetcher import CurlFetcher

    configure_redaction()  # every process that downloads (CLI, worker) builds its fetcher here
    settings = HttpSettings(pool_size=max(concurrency, 1), per_host_concurrency=per_host_concurrency,
                            per_host_rps=per_host_rps)
    if max_file_bytes is not None:
        settings = dataclasses.replace(settings, max_file_bytes=max_file_bytes)
    return CurlFetcher(settings, clock=clock or SystemClock(), guard=AddressGuard(allow_hosts=allow_hosts))


def build_store(dest: str, *, endpoint_url: str | None = None) -> ObjectStore:
    """A local folder, or ``s3://bucket/prefix`` (real AWS or any S3-compatible endpoint)."""
    if dest.startswith("s3://"):
        from fanfetch.adapters.s3 import S3Store

        bucket, prefix = parse_s3_uri(dest)
        return S3Store(aws_client("s3", endpoint_url=endpoint_url), bucket, prefix)
    return LocalStore(dest)


def build_group_context(
    *,
    fetcher: CurlFetcher,
    store: ObjectStore,
    concurrency: int,
    spool_dir: str | None = None,
    previous: Callable[[str], tuple[str | None, tuple[Validator, ...]]] | None = None,
    spool_max_bytes: int | None = None,
    clock: Clock | None = None,
) -> GroupContext:
    """The context of ``process_group``, with a spool budget measured on the disk that holds ``spool_dir``
    (the system temp folder when None: /tmp in a Lambda), capped at ``spool_max_bytes``."""
    spool = SpoolBudget.for_dir(spool_dir or tempfile.gettempdir(), cap_bytes=spool_max_bytes)
    return GroupContext(
        fetcher=fetcher,
        store=store,
        files=ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="file"),
        clock=clock or SystemClock(),
        spool_dir=spool_dir,
        previous=previous,
        spool=spool,
    )


def build_queue(settings: Settings, *, endpoint_url: str | None = None) -> SqsQueue:
    from fanfetch.adapters.sqs import SqsQueue

    return SqsQueue(aws_client("sqs", endpoint_url=endpoint_url), settings.queue_url,
                    calls_in_flight=settings.send_calls_in_flight)


@dataclass(frozen=True)
class WorkerApp:
    """What a warm worker container keeps between invocations."""

    settings: Settings
    ctx: GroupContext
    dead_letters: SqsQueue | None
    book: JobBook | None = None
    call_deadline: CallDeadline | None = None  # the handler sets the invocation's end here; None: no guard
    failure_store: ObjectStore | None = None  # where failure records go (None: ctx.store)


def bookkeeping_config(settings: Settings | None = None, *, max_attempts: int | None = None) -> Any:
    """The botocore ``Config`` of the worker's bookkeeping clients: ``settings``' bookkeeping timeouts (defaults when
    None) and attempts, or ``max_attempts`` (the dead-letter path: 1)."""
    settings = settings or Settings()
    return aws_config(connect_timeout_s=settings.bookkeeping_connect_timeout_s,
                      read_timeout_s=settings.bookkeeping_read_timeout_s,
                      max_attempts=max_attempts if max_attempts is not None else settings.bookkeeping_max_attempts)


def bookkeeping_need_s(settings: Settings) -> float:
    """The longest time one bookkeeping attempt may take with the pause that may follow it (the guard starts an
    attempt only with this much left)."""
    from fanfetch.adapters.call_deadline import attempt_need_s

    config, most = bookkeeping_config(settings), settings.bookkeeping_max_attempts
    return max(attempt_need_s(config, n, most, then_pause_s=BOOKKEEPING_LOOP_PAUSE_S) for n in range(1, most + 1))


def _check_bookkeeping_fits(settings: Settings) -> None:
    """InputError when the reserve kept after the downloads cannot hold one bookkeeping attempt: the verdicts of a
    batch that works to its deadline could then never be counted (a reserve of 0 keeps nothing back on purpose)."""
    need = bookkeeping_need_s(settings)
    if 0 < settings.deadline_reserve_s < need:
        raise InputError(
            f"bad configuration: FANFETCH_DEADLINE_RESERVE_S={settings.deadline_reserve_s:g} is shorter than a "
            f"bookkeeping attempt may take ({need:g} s: FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S="
            f"{settings.bookkeeping_connect_timeout_s:g} + FANFETCH_BOOKKEEPING_READ_TIMEOUT_S="
            f"{settings.bookkeeping_read_timeout_s:g} + the pause after it, FANFETCH_BOOKKEEPING_MAX_ATTEMPTS="
            f"{settings.bookkeeping_max_attempts}): raise the reserve or shorten the timeouts")


def build_worker_app(env: dict[str, str] | None = None, *, clock: Clock | None = None) -> WorkerApp:
    """The worker's adapters. Every bookkeeping client checks the invocation's time left before each attempt;
    the dead-letter path (failure record + DLQ send) makes one attempt, so a last delivery's reason still gets
    out with 3 s left (a failed send hands the record back: SQS's redelivery is its retry)."""
    from fanfetch.adapters.call_deadline import CallDeadline
    from fanfetch.adapters.events import EventBridgeEvents
    from fanfetch.adapters.s3 import S3Store
    from fanfetch.adapters.sqs import SqsQueue

    settings = Settings.from_env(env if env is not None else dict(os.environ), require=("BUCKET_NAME",))
    _check_bookkeeping_fits(settings)
    clock = clock or SystemClock()
    deadline = CallDeadline(clock)

    def bookkeeping(service: str, *, dead_letter: bool = False) -> Any:
        """A guarded client: the dead-letter path's makes one attempt and has no retry loop around it."""
        client = aws_client(service, config=bookkeeping_config(settings, max_attempts=1 if dead_letter else None))
        return deadline.guard(client, then_pause_s=0.0 if dead_letter else BOOKKEEPING_LOOP_PAUSE_S)

    fetcher = build_fetcher(concurrency=settings.concurrency, allow_hosts=settings.allow_hosts,
                            max_file_bytes=settings.max_file_bytes, per_host_concurrency=settings.per_host_concurrency,
                            per_host_rps=settings.per_host_rps, clock=clock)  # one clock: the deadlines compare
    store = S3Store(aws_client("s3"), settings.bucket_name, settings.output_prefix)  # outputs: before the deadline
    ledger = build_ledger(settings, client=bookkeeping("dynamodb"))
    ctx = build_group_context(fetcher=fetcher, store=store, concurrency=settings.concurrency,
                              previous=ledger.last_validators if ledger is not None else None,
                              spool_dir=tempfile.gettempdir(), spool_max_bytes=settings.spool_max_bytes, clock=clock)
    dead_letters = SqsQueue(bookkeeping("sqs", dead_letter=True), settings.dlq_url) if settings.dlq_url else None
    failure_store = S3Store(bookkeeping("s3", dead_letter=True), settings.bucket_name, settings.output_prefix)
    book = None
    if ledger is not None:
        book = JobBook(ledger=ledger, events=EventBridgeEvents(bookkeeping("events"), bus_name=settings.event_bus_name),
                       store=S3Store(bookkeeping("s3"), settings.bucket_name, settings.output_prefix))
    return WorkerApp(settings=settings, ctx=ctx, dead_letters=dead_letters, book=book, call_deadline=deadline,
                     failure_store=failure_store)


def build_ledger(settings: Settings, *, client: Any = None) -> DynamoDBLedger | None:
    """The DynamoDB job ledger named by ``LEDGER_TABLE`` (through ``client``, else a default one), or None when
    bookkeeping is off."""
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger

    if not settings.ledger_table:
        return None
    return DynamoDBLedger(client if client is not None else aws_client("dynamodb"), settings.ledger_table)


def guard_resolver(allow_hosts: Sequence[str]) -> Callable[[str, int], object]:
    """``AddressGuard(allow_hosts).resolve``, looking names up through ``socket.getaddrinfo`` at call time."""
    return AddressGuard(allow_hosts=allow_hosts,
                        resolver=lambda *args, **kwargs: socket.getaddrinfo(*args, **kwargs)).resolve


def build_output_store(settings: Settings) -> ObjectStore | None:
    """The producer's view of the workers' output (BUCKET_NAME + OUTPUT_PREFIX); None without a bucket."""
    if not settings.bucket_name:
        return None
    from fanfetch.adapters.s3 import S3Store

    return S3Store(aws_client("s3"), settings.bucket_name, settings.output_prefix)


def build_manifest_reader() -> ManifestReader:
    """Manifests the producer is handed, read from S3 (a client built only when one is read)."""
    from fanfetch.adapters.manifests import S3Manifests

    return S3Manifests(lambda: aws_client("s3"))


def open_local_ledger(path: str | None) -> tuple[SqliteLedger | None, list[str]]:
    """A local run's SQLite ledger at ``path`` (its folder made), or None and the one-line problem when it does
    not open (pre-flight names it); (None, []) without a path."""
    from fanfetch.adapters.ledger_sqlite import SqliteLedger
    from fanfetch.errors import FanfetchError

    if path is None:
        return None, []
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return SqliteLedger(path), []
    except (FanfetchError, OSError) as exc:
        return None, [f"ledger {path} does not open: {exc}"]


def build_table_ledger(table: str | None, *, endpoint_url: str | None = None) -> DynamoDBLedger | None:
    """The stack's DynamoDB job ledger ``table`` (None without one), for commands given it by flag."""
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger

    return DynamoDBLedger(aws_client("dynamodb", endpoint_url=endpoint_url), table) if table else None


def build_job_events(bus_name: str = "default", *, endpoint_url: str | None = None) -> EventBridgeEvents:
    """Where "job finished" is announced: the EventBridge bus ``bus_name``."""
    from fanfetch.adapters.events import EventBridgeEvents

    return EventBridgeEvents(aws_client("events", endpoint_url=endpoint_url), bus_name=bus_name)


# --- what the command's entry points are given (fanfetch run, worker, report and the ops commands) --------------


@dataclass(frozen=True)
class Destination:
    """Where a run writes: its store and, for a local folder, its own ledger file and a spool folder beside the
    outputs (an S3 destination has neither: no ledger by default, downloads spool in the system temp folder)."""

    store: ObjectStore
    ledger_path: str | None = None  # a local run's ledger: DEST/_jobs/ledger.sqlite
    make_spool_dir: Callable[[], str | None] = lambda: None  # made when asked (after pre-flight), not at build


def build_destination(dest: str, *, endpoint_url: str | None = None) -> Destination:
    """The store of ``dest`` (``build_store``) with what a local folder keeps beside it."""
    store = build_store(dest, endpoint_url=endpoint_url)
    if isinstance(store, LocalStore):
        return Destination(store, ledger_path=local_ledger_path(dest), make_spool_dir=store.ensure_tmp_dir)
    return Destination(store)


def build_clock() -> Clock:
    """The real clock (monotonic time and sleep)."""
    return SystemClock()


def build_dead_letters(dlq_url: str | None, *, sqs_client: Any) -> SqsQueue | None:
    """Where permanent failures go at once with their reason: the DLQ at ``dlq_url`` (None without one)."""
    from fanfetch.adapters.sqs import SqsQueue

    return SqsQueue(sqs_client, dlq_url) if dlq_url else None


def local_ledger_path(dest: str) -> str:
    """Where a local run into the folder ``dest`` keeps its ledger: ``DEST/_jobs/ledger.sqlite``."""
    from fanfetch.adapters.ledger_sqlite import default_ledger_path

    return default_ledger_path(dest)


def open_ledger_file(path: str) -> SqliteLedger:
    """An existing SQLite ledger at ``path``, for reading (raises LedgerError when it does not open)."""
    from fanfetch.adapters.ledger_sqlite import SqliteLedger

    return SqliteLedger(path)


def find_stack(name: str, *, endpoint_url: str | None = None, cfn_client: Any = None) -> StackOutputs:
    """The deployed stack ``name``'s outputs, by role (InputError naming a missing stack or output)."""
    from fanfetch.adapters.stack_outputs import resolve_stack

    return resolve_stack(name, cfn_client=cfn_client or aws_client("cloudformation", endpoint_url=endpoint_url))


def build_stack_ledger(stack: StackOutputs, endpoint_url: str | None = None) -> Ledger:
    """The stack's DynamoDB job ledger (its LedgerTableName output); InputError for a stack without one."""
    from fanfetch.errors import InputError

    ledger = build_table_ledger(stack.ledger_table, endpoint_url=endpoint_url)
    if ledger is None:
        raise InputError(f"stack {stack.name!r} has no LedgerTableName output: redeploy it with this version")
    return ledger


def build_s3_store(bucket: str, prefix: str = "", *, s3_client: Any) -> ObjectStore:
    """The S3 objects under ``s3://bucket/prefix``, through ``s3_client``."""
    from fanfetch.adapters.s3 import S3Store

    return S3Store(s3_client, bucket, prefix)


def build_invoker(endpoint_url: str | None = None) -> Invoker:
    """Invokes a function synchronously at most once (``lambda_invoke_client``), e.g. the producer on submit."""
    from fanfetch.adapters.lambda_invoke import LambdaInvoker

    return LambdaInvoker(aws_client("lambda", endpoint_url=endpoint_url),
                         invoke_client_for=lambda read_timeout_s: lambda_invoke_client(read_timeout_s,
                                                                                        endpoint_url=endpoint_url))


def build_redrive(sqs_client: Any, *, move_client: Any) -> DeadLetterMover:
    """Moves a DLQ's messages back to the work queue (``move_client`` starts the move task)."""
    from fanfetch.adapters.sqs_redrive import SqsRedrive

    return SqsRedrive(sqs_client, move_client=move_client)

"""The worker Lambda's composition: what a warm container keeps (WorkerApp), built from the environment, with
bookkeeping clients whose timeouts and attempts fit the reserve kept after the downloads."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fanfetch.adapters.clock import SystemClock
from fanfetch.app.services import GroupContext
from fanfetch.app.worker import JobBook
from fanfetch.bootstrap.aws import aws_client, aws_config
from fanfetch.bootstrap.fetching import build_fetcher, build_group_context
from fanfetch.bootstrap.stack import build_ledger
from fanfetch.errors import InputError
from fanfetch.ports import Clock, ObjectStore
from fanfetch.settings import Settings

if TYPE_CHECKING:  # boto3-backed adapters are imported where they are built, so `fanfetch run` into a
    # local folder never pays boto3's import time
    from fanfetch.adapters.call_deadline import CallDeadline
    from fanfetch.adapters.sqs import SqsQueue

__all__ = ["WorkerApp", "bookkeeping_config", "bookkeeping_need_s", "build_worker_app"]


# The worker's bookkeeping calls (DynamoDB, DLQ sends, EventBridge, failure records, results) have their own
# timeouts and attempts (Settings.bookkeeping_*: 2 s connect, 5 s read, 3 attempts unless set), short enough that
# each attempt, checked against the time left first (adapters/call_deadline.py), fits with the pause that may
# follow it (13 s, 14 s, 9 s for attempts 1-3) within the 15 s FANFETCH_DEADLINE_RESERVE_S kept after the downloads.
BOOKKEEPING_LOOP_PAUSE_S = 2.0  # the longest pause of our own retry loops (ledger conflicts, PutEvents, S3 409)


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

"""``fanfetch worker``: a long-running SQS poller (EC2, ECS, or an origin that allow-lists one fixed IP)
that runs the Lambda worker's use case, ``run_batch``, on the batches it receives itself.

Acknowledged records are deleted. Records returned for a retry are left alone: the heartbeat stops,
so they reappear within one visibility timeout, as they would under Lambda's event source mapping.
Resetting their visibility to 0 would retry sooner, but a struggling origin would then be hit again
at once by every worker; the visibility timeout is the backoff (and ``maxReceiveCount`` still bounds it).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from fanfetch.app.services import GroupContext
from fanfetch.app.worker import DeadLetters, JobBook, run_batch
from fanfetch.bootstrap.aws import aws_client
from fanfetch.bootstrap.destination import build_destination
from fanfetch.bootstrap.fetching import build_clock, build_fetcher, build_group_context
from fanfetch.bootstrap.stack import build_dead_letters, build_job_events, build_receiver, build_table_ledger
from fanfetch.core.models import OnMissing
from fanfetch.errors import InputError, QueueError
from fanfetch.ports import Clock, MessageSource

__all__ = ["PollSettings", "PollSummary", "QueuePoller", "Heartbeat", "WorkerOptions", "build_long_worker",
           "serve", "install_stop_signals"]

_log = logging.getLogger("fanfetch.app.worker")
_MAX_ERROR_BACKOFF_S = 30.0


@dataclass(frozen=True)
class PollSettings:
    """How the poller receives. Times in seconds."""

    wait_time_s: int = 20  # long polling: ReceiveMessage WaitTimeSeconds (0-20)
    batch_size: int = 10  # messages per receive (1-10), processed together by run_batch
    groups_in_flight: int = 10  # groups of a batch processed at once
    max_receive_count: int = 5  # the queue's redrive maxReceiveCount (last delivery → dead-lettered with reason)
    visibility_timeout_s: int | None = None  # None: the queue's own VisibilityTimeout
    max_messages: int | None = None  # stop after receiving this many (batch jobs, tests)
    idle_exit_s: float | None = None  # stop after this long without a message (batch jobs, tests)
    on_missing: OnMissing = OnMissing.FAIL  # 404/410 files of groups whose message names no on_missing

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.wait_time_s <= 20:
            problems.append("wait time must be 0-20 s")
        if not 1 <= self.batch_size <= 10:
            problems.append("batch size must be 1-10")
        if self.groups_in_flight < 1 or self.max_receive_count < 1:
            problems.append("groups in flight and max receive count must be at least 1")
        if self.visibility_timeout_s is not None and not 1 <= self.visibility_timeout_s <= 43200:
            problems.append("visibility timeout must be 1-43200 s")
        if self.max_messages is not None and self.max_messages < 1:
            problems.append("max messages must be at least 1")
        if self.idle_exit_s is not None and self.idle_exit_s < 0:
            problems.append("idle exit must be ≥ 0 s")
        if problems:
            raise InputError("worker: " + "; ".join(problems))


@dataclass(frozen=True)
class PollSummary:
    """What one worker did before it stopped, and why it stopped (stopped, idle, max-messages)."""

    reason: str
    batches: int = 0
    received: int = 0
    deleted: int = 0
    returned: int = 0  # left to reappear after the visibility timeout
    dead_lettered: int = 0
    released: int = 0  # received after a stop was asked: made visible again at once, untouched

    def to_dict(self) -> dict[str, object]:
        return {"reason": self.reason, "batches": self.batches, "received": self.received, "deleted": self.deleted,
                "returned": self.returned, "dead_lettered": self.dead_lettered, "released": self.released}


class Heartbeat:
    """While a batch runs, extend its messages' visibility to ``visibility_s`` every ``interval_s``, so a
    long group is not delivered to a second worker. A thread waiting on an Event; leaving the ``with``
    block stops it at once."""

    def __init__(self, queue: MessageSource, receipt_handles: Sequence[str], *, visibility_s: int,
                 interval_s: float):
        self._queue = queue
        self._handles = {str(i): h for i, h in enumerate(receipt_handles)}
        self._visibility_s = visibility_s
        self._interval_s = interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="visibility-heartbeat", daemon=True)
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self._interval_s):
            try:
                _, failures = self._queue.change_visibility(self._handles, self._visibility_s)
            except QueueError as exc:  # the next beat tries again; the timeout has slack
                _log.warning("visibility heartbeat failed: %s", exc)
                continue
            self.beats += 1
            for entry_id, code in failures:
                _log.warning("visibility heartbeat: message %s: %s", entry_id, code)


class QueuePoller:
    """Receives batches from one queue and runs each through ``run_batch`` until told to stop."""

    def __init__(self, queue: MessageSource, ctx: GroupContext, *, settings: PollSettings,
                 clock: Clock, dead_letters: DeadLetters | None = None, stop: threading.Event | None = None,
                 book: JobBook | None = None):
        self._book = book
        self._queue = queue
        self._ctx = ctx
        self._settings = settings
        self._dead_letters = dead_letters
        self.stop = stop or threading.Event()
        self._clock = clock

    def run(self) -> PollSummary:
        """Poll until stopped (signal / ``stop`` event), idle for ``idle_exit_s`` or ``max_messages`` received.

        A batch in hand is always finished first. Raises InputError when the queue does not exist.
        """
        settings = self._settings
        visibility_s = settings.visibility_timeout_s or self._queue.visibility_timeout_s()
        counts = {"batches": 0, "received": 0, "deleted": 0, "returned": 0, "dead_lettered": 0, "released": 0}
        last_message_at = self._clock.monotonic()
        errors = 0
        while True:
            if self.stop.is_set():
                reason = "stopped"
                break
            if settings.max_messages is not None and counts["received"] >= settings.max_messages:
                reason = "max-messages"
                break
            if settings.idle_exit_s is not None and self._clock.monotonic() - last_message_at >= settings.idle_exit_s:
                reason = "idle"
                break
            wanted = settings.batch_size
            if settings.max_messages is not None:
                wanted = min(wanted, settings.max_messages - counts["received"])
            try:
                messages = self._queue.receive(wanted, wait_s=settings.wait_time_s)
            except QueueError as exc:  # a missing queue is an InputError: it ends the run
                errors += 1
                delay = min(_MAX_ERROR_BACKOFF_S, 2.0 ** min(errors, 5))
                _log.warning("receive failed (%s); retrying in %.0f s", exc, delay)
                self.stop.wait(delay)
                continue
            errors = 0
            if not messages:
                continue
            if self.stop.is_set():  # a signal came during the long poll: hand these straight back
                counts["released"] += self._release(messages)
                reason = "stopped"
                break
            counts["received"] += len(messages)
            counts["batches"] += 1
            for name, value in self._process(messages, visibility_s).items():
                counts[name] += value
            last_message_at = self._clock.monotonic()  # idle time counts from the end of the last batch
        return PollSummary(reason=reason, **counts)

    def _process(self, messages: list[dict[str, Any]], visibility_s: int) -> dict[str, int]:
        records = [_as_lambda_record(m) for m in messages]
        handles = [m["ReceiptHandle"] for m in messages]
        with Heartbeat(self._queue, handles, visibility_s=visibility_s, interval_s=visibility_s / 2):
            try:
                outcome = run_batch(records, self._ctx, groups_in_flight=self._settings.groups_in_flight,
                                    deadline=None, dead_letters=self._dead_letters,
                                    max_receive_count=self._settings.max_receive_count, book=self._book,
                                    on_missing=self._settings.on_missing)
                verdicts: Mapping[str, Any] = outcome.verdicts
            except Exception:  # run_batch never raises by contract; if it does, the whole batch comes back
                _log.exception("batch failed; its messages will be delivered again")
                verdicts = {}
        acknowledged = [m for m in messages if m["MessageId"] in verdicts and verdicts[m["MessageId"]].acknowledge]
        dead = sum(1 for m in acknowledged if verdicts[m["MessageId"]].dead_lettered)
        deleted = self._delete(acknowledged)
        _log.info("batch of %d: %d done (%d dead-lettered), %d back to the queue", len(messages),
                  len(acknowledged), dead, len(messages) - len(acknowledged))
        return {"deleted": deleted, "returned": len(messages) - len(acknowledged), "dead_lettered": dead}

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        """Delete acknowledged messages (one retry for failed entries); a message not deleted comes back,
        finds its output stored and is acknowledged again without a download."""
        pending = {str(i): m["ReceiptHandle"] for i, m in enumerate(messages)}
        deleted = 0
        for _ in range(2):
            if not pending:
                break
            try:
                done, failed = self._queue.delete(pending)
            except QueueError as exc:
                _log.warning("delete failed: %s", exc)
                continue
            deleted += done
            pending = {i: pending[i] for i in failed if i in pending}
        return deleted

    def _release(self, messages: list[dict[str, Any]]) -> int:
        try:
            changed, _ = self._queue.change_visibility({str(i): m["ReceiptHandle"] for i, m in enumerate(messages)}, 0)
        except QueueError:
            return 0  # they come back after the visibility timeout instead
        return changed


def _as_lambda_record(message: Mapping[str, Any]) -> dict[str, Any]:
    """A received message in the shape of a Lambda SQS record (what ``run_batch`` reads)."""
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""), "attributes": dict(message.get("Attributes") or {})}


# --- composition -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerOptions:
    """The ``fanfetch worker`` flags."""

    queue_url: str
    dest: str  # s3://bucket[/prefix] or a local folder
    concurrency: int = 16  # file downloads in flight
    dlq_url: str | None = None  # dead-letter permanent failures at once, with their reason
    allow_hosts: tuple[str, ...] = ()
    endpoint_url: str | None = None
    max_file_bytes: int | None = None
    poll: PollSettings = PollSettings()
    per_host_concurrency: int | None = None  # requests in flight per host (politeness)
    per_host_rps: float | None = None  # requests per second per host (politeness)
    ledger_table: str | None = None  # count verdicts in the stack's job ledger (so `fanfetch status` sees them)
    event_bus_name: str = "default"  # where "job finished" is published when a verdict finishes a job


def build_long_worker(options: WorkerOptions, *, stop: threading.Event | None = None,
                      sqs_client: Any | None = None) -> tuple[QueuePoller, Callable[[], None]]:
    """Compose the real adapters from flags (like ``bootstrap.worker.build_worker_app`` from the environment).

    Returns the poller and a ``close`` that releases the thread pool and HTTP connections.
    """
    sqs = sqs_client or aws_client("sqs", endpoint_url=options.endpoint_url)
    destination = build_destination(options.dest, endpoint_url=options.endpoint_url)
    store = destination.store
    clock = build_clock()
    fetcher = build_fetcher(concurrency=options.concurrency, allow_hosts=options.allow_hosts,
                            max_file_bytes=options.max_file_bytes, per_host_concurrency=options.per_host_concurrency,
                            per_host_rps=options.per_host_rps, clock=clock)
    ledger = build_table_ledger(options.ledger_table, endpoint_url=options.endpoint_url)
    ctx = build_group_context(fetcher=fetcher, store=store, concurrency=options.concurrency,
                              spool_dir=destination.make_spool_dir(), clock=clock,
                              previous=ledger.last_validators if ledger is not None else None)
    dead_letters = build_dead_letters(options.dlq_url, sqs_client=sqs)
    book = None
    if ledger is not None:
        events = build_job_events(options.event_bus_name, endpoint_url=options.endpoint_url)
        book = JobBook(ledger=ledger, events=events, store=store)
    receiver = build_receiver(options.queue_url, sqs_client=sqs)
    poller = QueuePoller(receiver, ctx, settings=options.poll, clock=clock, dead_letters=dead_letters,
                         stop=stop, book=book)

    def close() -> None:
        ctx.files.shutdown(wait=True, cancel_futures=True)
        fetcher.close()

    return poller, close


def install_stop_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT set ``stop`` (a second one aborts with KeyboardInterrupt); returns the undo.

    Does nothing off the main thread (Python only delivers signals there).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        _log.warning("%s: finishing the batch in hand, then exiting (signal again to abort)",
                     signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def serve(options: WorkerOptions, *, stop: threading.Event | None = None, handle_signals: bool = True) -> PollSummary:
    """Run one worker until it stops; the entry point of ``fanfetch worker``."""
    stop = stop or threading.Event()
    poller, close = build_long_worker(options, stop=stop)
    restore = install_stop_signals(stop) if handle_signals else (lambda: None)
    try:
        return poller.run()
    finally:
        restore()
        close()

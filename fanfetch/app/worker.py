"""The worker use case for one SQS batch: decode every record, run its groups together, and give
one verdict per record: done, try again (reported in ``batchItemFailures``), or dead-lettered.

A failure that cannot heal (poison message, 404, too large) or that has used its last delivery is
sent to the DLQ by the worker itself, with the reason as message attributes, and a failure record is
written beside the outputs; then the record is acknowledged. Order: failure record, ledger count, DLQ
send — the one step that cannot be repeated without a duplicate comes last, so a record that comes back
(any step refused) has sent nothing yet. Waiting for SQS's redrive would retry
permanent failures ``maxReceiveCount`` times and land them in the DLQ without a reason. The redrive
policy stays as the safety net for a worker that dies mid-batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from fanfetch.app.engine import run_groups
from fanfetch.app.jobs import settle_outcome, verdict_from_result
from fanfetch.app.services import GroupContext
from fanfetch.core.bookkeeping import encode_component, failure_record_key
from fanfetch.core.messages import JobMessage, decode_message
from fanfetch.core.models import GroupResult, OnMissing
from fanfetch.errors import FanfetchError, GroupFailed, MessageError
from fanfetch.ports import JobEvents, Ledger, ObjectStore

__all__ = ["DeadLetters", "BatchOutcome", "Verdict", "JobBook", "run_batch"]


@dataclass(frozen=True)
class JobBook:
    """The bookkeeping side of a worker: count each final verdict once, finish each job once."""

    ledger: Ledger
    events: JobEvents
    store: ObjectStore  # where results manifests and summaries are written (the outputs' store)


class DeadLetters(Protocol):
    """Where messages that will never succeed go, with their reason (SQS: the stack's DLQ)."""

    def dead_letter(self, body: str, reason: Mapping[str, str]) -> None: ...


@dataclass(frozen=True)
class Verdict:
    """The answer for one record: acknowledged (ok or dead-lettered) or returned for a retry."""

    acknowledge: bool
    result: GroupResult | None = None
    error: FanfetchError | None = None
    dead_lettered: bool = False
    job_id: str | None = None  # the message's job; None for a poison message


@dataclass(frozen=True)
class BatchOutcome:
    """Per message id, its verdict."""

    verdicts: Mapping[str, Verdict]
    finish_errors: tuple[str, ...] = ()  # a finished job whose results/announcement could not be written

    def settle(self, message_id: str | None) -> GroupResult | None:
        """Return when the record may be deleted; raise when it must come back. A record without a
        message id cannot be named in a batch response: it was dead-lettered as poison (or, without a
        DLQ, is left to SQS's redrive policy) and is settled as done here."""
        if message_id is None or message_id not in self.verdicts:
            return None
        verdict = self.verdicts[message_id]
        if not verdict.acknowledge:
            raise verdict.error or FanfetchError("unknown failure")
        return verdict.result


def _receive_count(record: Mapping[str, object]) -> int:
    attributes = record.get("attributes")
    raw = attributes.get("ApproximateReceiveCount", "1") if isinstance(attributes, Mapping) else "1"
    try:
        return int(str(raw))
    except ValueError:
        return 1


def _message_id(record: object, index: int) -> str:
    """The record's messageId, or a stand-in (never a real SQS id) for a record that has none."""
    message_id = record.get("messageId") if isinstance(record, Mapping) else None
    if isinstance(message_id, str) and message_id:
        return message_id
    return f"no-message-id-{index}"


def _body_of(record: object) -> str:
    body = record.get("body", "") if isinstance(record, Mapping) else ""
    return body if isinstance(body, str) else str(body)


def _sendable(text: str) -> str:
    """``text`` as SQS and S3 accept it: unpaired surrogates (which cannot be UTF-8) escaped."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def run_batch(
    records: Sequence[Mapping[str, object]],
    ctx: GroupContext,
    *,
    groups_in_flight: int,
    deadline: float | None,
    dead_letters: DeadLetters | None = None,
    max_receive_count: int = 5,
    book: JobBook | None = None,
    on_missing: OnMissing = OnMissing.FAIL,
    failure_store: ObjectStore | None = None,
) -> BatchOutcome:
    """Process the groups of a batch concurrently and decide each record's fate; never raises.

    With a ``book``, every final verdict (stored, or dead-lettered) is counted in the ledger before
    the record is acknowledged, and a failure is sent to the DLQ only once counted; a verdict that cannot
    be counted comes back (unsent) to be counted later.
    Failure records go to ``failure_store`` (default: the outputs' store).
    """
    records_store = failure_store if failure_store is not None else ctx.store
    if ctx.spool is not None:  # /tmp may hold less (or more) than at the last batch of a warm container
        ctx.spool.remeasure()
    decoded: dict[str, JobMessage] = {}
    verdicts: dict[str, Verdict] = {}
    letters: dict[str, _DeadLetter | None] = {}  # a final failure's DLQ message, sent once its verdict is counted
    ids = [_message_id(r, i) for i, r in enumerate(records)]
    stand_ins = {m for m, r in zip(ids, records, strict=True) if _message_id(r, -1) != m}
    by_id = dict(zip(ids, records, strict=True))
    bodies = {m: _body_of(r) for m, r in by_id.items()}
    for message_id in by_id:
        try:
            if message_id in stand_ins:
                raise MessageError("SQS record has no messageId")
            decoded[message_id] = decode_message(bodies[message_id])
        except MessageError as exc:
            record_doc = {"message_id": message_id, "error": str(exc), "error_type": type(exc).__name__}
            poison_key = f"_jobs/_poison/{encode_component(message_id)}.json"
            verdicts[message_id], letters[message_id] = _record_failure(
                dead_letters, records_store, bodies[message_id], exc, poison_key, record_doc)
    ids = list(decoded)
    groups = [decoded[i].group.with_default_on_missing(on_missing) for i in ids]  # the message's own policy wins
    results = run_groups(groups, ctx, group_workers=groups_in_flight, deadline=deadline,
                         refresh=[decoded[i].refresh for i in ids])
    for message_id, result in zip(ids, results, strict=True):
        if result.ok:
            verdicts[message_id] = Verdict(acknowledge=True, result=result)
            continue
        error = GroupFailed(result.group_id, result.error or "unknown error", retryable=result.retryable)
        deliveries = _receive_count(by_id[message_id])
        if result.retryable and deliveries < max_receive_count:
            verdicts[message_id] = Verdict(acknowledge=False, result=result, error=error)
            continue
        job_id = decoded[message_id].job_id
        record_doc = dict(result.to_record(), job=job_id, deliveries=deliveries,
                          error_type="permanent" if not result.retryable else "retries exhausted")
        verdicts[message_id], letters[message_id] = _record_failure(
            dead_letters, records_store, bodies[message_id], error, failure_record_key(job_id, result.group_id),
            record_doc, result=result)
    verdicts = {m: replace(v, job_id=decoded[m].job_id) if m in decoded else v for m, v in verdicts.items()}
    finish_errors: list[str] = []
    if book is not None:
        clock = ctx.clock
        time_left = None if deadline is None else (lambda: deadline - clock.monotonic())
        verdicts = {m: _count(book, v, finish_errors, time_left) for m, v in verdicts.items()}
    if dead_letters is not None:  # last: only what is counted (or has no job to count in) goes to the DLQ
        verdicts = {m: _send(dead_letters, v, letters.get(m)) for m, v in verdicts.items()}
    return BatchOutcome(verdicts=verdicts, finish_errors=tuple(finish_errors))


def _count(book: JobBook, verdict: Verdict, finish_errors: list[str],
           time_left: Callable[[], float] | None) -> Verdict:
    """Record an acknowledged verdict in the ledger; the one that finishes its job writes the results (if the
    invocation has the time: ``time_left`` is measured to the groups' deadline)."""
    if not verdict.acknowledge or verdict.result is None or verdict.job_id is None:
        return verdict
    result = verdict.result
    record = verdict_from_result(verdict.job_id, result, started_at=result.started_at,
                                 finished_at=result.finished_at, change=result.change)
    try:
        outcome = book.ledger.record_group(record)
    except FanfetchError as exc:  # not counted yet: let the message come back and be counted then
        return replace(verdict, acknowledge=False, error=exc)
    try:  # the verdict that finishes a job announces it; an upgrade of a finished job rewrites its results
        settle_outcome(outcome, ledger=book.ledger, store=book.store, events=book.events,
                       time_left_s=time_left)
    except FanfetchError as exc:
        # Counted, but the finish is not complete: let the message come back; as a duplicate it sees
        # ``announce_pending`` and completes the finish (the ledger does not count it again).
        finish_errors.append(f"job {verdict.job_id}: results or announcement not written: {exc}")
        return replace(verdict, acknowledge=False, error=exc)
    return verdict


@dataclass(frozen=True)
class _DeadLetter:
    """The DLQ message of a final failure: its body and the reason attributes."""

    body: str
    reason: Mapping[str, str]


def _record_failure(
    dead_letters: DeadLetters | None,
    store: ObjectStore,
    body: str,
    error: FanfetchError,
    record_key: str,
    record_doc: Mapping[str, object],
    *,
    result: GroupResult | None = None,
) -> tuple[Verdict, _DeadLetter | None]:
    """Write the failure record (idempotent: a redelivery overwrites it) and prepare the DLQ message, sent only
    after the verdict is counted. Without a DLQ, or when the record cannot be written, the record comes back."""
    if dead_letters is None:
        return Verdict(acknowledge=False, result=result, error=error), None
    try:
        store.put_bytes(record_key, json.dumps(record_doc, indent=1).encode(), content_type="application/json")
    except FanfetchError:
        return Verdict(acknowledge=False, result=result, error=error), None
    letter = _DeadLetter(_sendable(body), {
        "fanfetch-error": _sendable(str(error)[:1000]),
        "fanfetch-error-type": str(record_doc.get("error_type", type(error).__name__)),
        "fanfetch-failure-record": record_key,
    })
    return Verdict(acknowledge=True, result=result, error=error), letter


def _send(dead_letters: DeadLetters, verdict: Verdict, letter: _DeadLetter | None) -> Verdict:
    """Send an acknowledged final failure to the DLQ; if the send fails, the (counted) record comes back and its
    redelivery — a duplicate for the ledger — sends it then."""
    if letter is None or not verdict.acknowledge:
        return verdict
    try:
        dead_letters.dead_letter(letter.body, letter.reason)
    except FanfetchError:
        return replace(verdict, acknowledge=False)
    return replace(verdict, dead_lettered=True)

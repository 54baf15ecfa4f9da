"""The worker use case for one SQS batch: decode every record, run its groups together, and give
one verdict per record: done, try again (reported in ``batchItemFailures``), or dead-lettered.

A failure that cannot heal (poison message, 404, too large) or that has used its last delivery is
sent to the DLQ by the worker itself, with the reason as message attributes, and a failure record is
written beside the outputs; then the record is acknowledged. Waiting for SQS's redrive would retry
permanent failures ``maxReceiveCount`` times and land them in the DLQ without a reason. The redrive
policy stays as the safety net for a worker that dies mid-batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from fanfetch.core.messages import JobMessage, decode_message
from fanfetch.core.models import GroupResult
from fanfetch.engine import run_groups
from fanfetch.errors import FanfetchError, GroupFailed, MessageError
from fanfetch.ports import ObjectStore
from fanfetch.services import GroupContext

__all__ = ["DeadLetters", "BatchOutcome", "Verdict", "run_batch", "failure_record_key"]


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


@dataclass(frozen=True)
class BatchOutcome:
    """Per message id, its verdict."""

    verdicts: Mapping[str, Verdict]

    def settle(self, message_id: str) -> GroupResult | None:
        """Return when the record may be deleted; raise when it must come back."""
        verdict = self.verdicts[message_id]
        if not verdict.acknowledge:
            raise verdict.error or FanfetchError("unknown failure")
        return verdict.result


def failure_record_key(job_id: str, group_id: str) -> str:
    return f"_jobs/{job_id}/failed/{group_id}.json"


def _receive_count(record: Mapping[str, object]) -> int:
    attributes = record.get("attributes")
    raw = attributes.get("ApproximateReceiveCount", "1") if isinstance(attributes, Mapping) else "1"
    try:
        return int(str(raw))
    except ValueError:
        return 1


def run_batch(
    records: Sequence[Mapping[str, object]],
    ctx: GroupContext,
    *,
    groups_in_flight: int,
    deadline: float | None,
    dead_letters: DeadLetters | None = None,
    max_receive_count: int = 5,
) -> BatchOutcome:
    """Process the groups of a batch concurrently and decide each record's fate; never raises."""
    decoded: dict[str, JobMessage] = {}
    verdicts: dict[str, Verdict] = {}
    bodies = {str(r["messageId"]): str(r.get("body", "")) for r in records}
    for record in records:
        message_id = str(record["messageId"])
        try:
            decoded[message_id] = decode_message(bodies[message_id])
        except MessageError as exc:
            record_doc = {"message_id": message_id, "error": str(exc), "error_type": type(exc).__name__}
            verdicts[message_id] = _dead_letter_or_retry(
                dead_letters, ctx.store, bodies[message_id], exc, f"_jobs/_poison/{message_id}.json", record_doc)
    ids = list(decoded)
    results = run_groups([decoded[i].group for i in ids], ctx, group_workers=groups_in_flight, deadline=deadline,
                         refresh=[decoded[i].refresh for i in ids])
    for message_id, result in zip(ids, results, strict=True):
        if result.ok:
            verdicts[message_id] = Verdict(acknowledge=True, result=result)
            continue
        error = GroupFailed(result.group_id, result.error or "unknown error", retryable=result.retryable)
        deliveries = _receive_count(next(r for r in records if str(r["messageId"]) == message_id))
        if result.retryable and deliveries < max_receive_count:
            verdicts[message_id] = Verdict(acknowledge=False, result=result, error=error)
            continue
        job_id = decoded[message_id].job_id
        record_doc = dict(result.to_record(), job=job_id, deliveries=deliveries,
                          error_type="permanent" if not result.retryable else "retries exhausted")
        verdicts[message_id] = _dead_letter_or_retry(
            dead_letters, ctx.store, bodies[message_id], error, failure_record_key(job_id, result.group_id),
            record_doc, result=result)
    return BatchOutcome(verdicts=verdicts)


def _dead_letter_or_retry(
    dead_letters: DeadLetters | None,
    store: ObjectStore,
    body: str,
    error: FanfetchError,
    record_key: str,
    record_doc: Mapping[str, object],
    *,
    result: GroupResult | None = None,
) -> Verdict:
    """Record the failure and move the message to the DLQ; if either step fails, let SQS retry it."""
    if dead_letters is None:
        return Verdict(acknowledge=False, result=result, error=error)
    try:
        store.put_bytes(record_key, json.dumps(record_doc, indent=1).encode(), content_type="application/json")
        dead_letters.dead_letter(body, {
            "fanfetch-error": str(error)[:1000],
            "fanfetch-error-type": str(record_doc.get("error_type", type(error).__name__)),
            "fanfetch-failure-record": record_key,
        })
    except FanfetchError:
        return Verdict(acknowledge=False, result=result, error=error)
    return Verdict(acknowledge=True, result=result, error=error, dead_lettered=True)

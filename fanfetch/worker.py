"""The worker use case for one SQS batch: decode every record, run its groups together, and
answer per record, so the handler can hand Powertools one verdict per message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fanfetch.core.messages import JobMessage, decode_message
from fanfetch.core.models import GroupResult
from fanfetch.engine import run_groups
from fanfetch.errors import GroupFailed, MessageError
from fanfetch.services import GroupContext

__all__ = ["BatchOutcome", "run_batch"]


@dataclass(frozen=True)
class BatchOutcome:
    """Per message id: the group's result, or the reason its message could not be read."""

    results: Mapping[str, GroupResult]
    poison: Mapping[str, MessageError]

    def settle(self, message_id: str) -> GroupResult:
        """The verdict for one record: return on success, raise on failure (so it is retried)."""
        if message_id in self.poison:
            raise self.poison[message_id]
        result = self.results[message_id]
        if not result.ok:
            raise GroupFailed(result.group_id, result.error or "unknown error", retryable=result.retryable)
        return result


def run_batch(
    records: Sequence[Mapping[str, object]], ctx: GroupContext, *, groups_in_flight: int, deadline: float | None
) -> BatchOutcome:
    """Process the groups of a batch of SQS records concurrently; never raises for a group's failure."""
    decoded: dict[str, JobMessage] = {}
    poison: dict[str, MessageError] = {}
    for record in records:
        message_id = str(record["messageId"])
        try:
            decoded[message_id] = decode_message(str(record.get("body", "")))
        except MessageError as exc:
            poison[message_id] = exc
    ids = list(decoded)
    results = run_groups([decoded[i].group for i in ids], ctx, group_workers=groups_in_flight, deadline=deadline)
    return BatchOutcome(results=dict(zip(ids, results, strict=True)), poison=poison)

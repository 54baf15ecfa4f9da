"""SQS as a ``WorkQueue``: SendMessageBatch packed to SQS's limits, several calls in flight,
entries returned in ``Failed`` retried with backoff (sender faults are not retried)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.backoff import Backoff
from fanfetch.adapters.clock import SystemClock
from fanfetch.core.planning import pack_batches
from fanfetch.errors import EnqueueError
from fanfetch.ports import Clock

__all__ = ["SqsQueue"]

# A whole SendMessageBatch call that fails with one of these will fail the same way again.
_PERMANENT_CODES = frozenset({
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "AccessDenied", "AccessDeniedException",
    "InvalidAddress", "InvalidSecurity", "KMS.AccessDeniedException", "KMS.DisabledException",
})

_DEPTH_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                     "ApproximateNumberOfMessagesDelayed")


class SqsQueue:
    """Implements ``fanfetch.ports.WorkQueue`` on one SQS queue URL."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        calls_in_flight: int = 16,
        max_attempts: int = 6,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
    ):
        if calls_in_flight < 1 or max_attempts < 1:
            raise ValueError("calls_in_flight and max_attempts must be at least 1")
        self._client = client
        self.queue_url = queue_url
        self._calls_in_flight = calls_in_flight
        self._backoff = Backoff(max_attempts, backoff_base_s, backoff_max_s, clock or SystemClock(), rand)

    def send_messages(self, bodies: Sequence[str]) -> int:
        batches = pack_batches(bodies)
        if not batches:
            return 0
        with ThreadPoolExecutor(max_workers=min(self._calls_in_flight, len(batches))) as pool:
            outcomes = list(pool.map(lambda idx: self._send_batch([bodies[i] for i in idx]), batches))
        sent = sum(ok for ok, _ in outcomes)
        failures = [reason for _, reasons in outcomes for reason in reasons]
        if failures:
            raise EnqueueError(f"could not enqueue every message; first reason: {failures[0]}", sent=sent,
                               failed=len(failures))
        return sent

    def dead_letter(self, body: str, reason: Mapping[str, str]) -> None:
        """Send one message with ``reason`` as String message attributes (used on the DLQ)."""
        attributes = {name: {"DataType": "String", "StringValue": value or "-"} for name, value in reason.items()}
        try:
            self._client.send_message(QueueUrl=self.queue_url, MessageBody=body, MessageAttributes=attributes)
        except (ClientError, BotoCoreError) as exc:
            raise EnqueueError(f"could not dead-letter a message: {_describe(exc)}", sent=0, failed=1) from exc

    def depth(self) -> int | None:
        """Messages in the queue (visible, in flight, delayed), as SQS approximates them; None when SQS cannot say
        (any error: the depth only adds to what the ledger tells)."""
        try:
            attributes = self._client.get_queue_attributes(QueueUrl=self.queue_url,
                                                           AttributeNames=list(_DEPTH_ATTRIBUTES))["Attributes"]
        except (ClientError, BotoCoreError):
            return None
        return sum(int(attributes.get(name, 0)) for name in _DEPTH_ATTRIBUTES)

    def _send_batch(self, bodies: list[str]) -> tuple[int, list[str]]:
        """Send one batch, retrying failed entries; return (sent, reasons for entries given up on)."""
        pending = {str(i): body for i, body in enumerate(bodies)}
        sent = 0
        given_up: list[str] = []
        for attempt in self._backoff.attempts():
            entries = [{"Id": entry_id, "MessageBody": body} for entry_id, body in pending.items()]
            try:
                response = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                reason = _describe(exc)
                if reason in _PERMANENT_CODES or self._backoff.is_last(attempt):
                    return sent, given_up + [reason] * len(pending)
                self._backoff.pause(attempt)
                continue
            sent += len(response.get("Successful", []))
            retry: dict[str, str] = {}
            for failed in response.get("Failed", []):
                reason = f"{failed.get('Code')}: {failed.get('Message', '')}".strip()
                if failed.get("SenderFault"):
                    given_up.append(reason)  # the message itself is at fault: resending cannot help
                else:
                    retry[failed["Id"]] = pending[failed["Id"]]
            pending = retry
            if not pending:
                return sent, given_up
            if not self._backoff.is_last(attempt):
                self._backoff.pause(attempt)
        return sent, given_up + ["still failing after retries"] * len(pending)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__

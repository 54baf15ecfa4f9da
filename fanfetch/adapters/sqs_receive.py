"""SQS as a long-running worker's ``MessageSource``: long-polled receives, batch deletes and visibility changes, and
the queue's own visibility timeout. A queue that does not exist is an InputError; any other failure of a call is a
QueueError carrying SQS's error code (the poll loop tries again)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.aws_errors import error_code
from fanfetch.errors import InputError, QueueError

__all__ = ["SqsReceiver"]

_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


class SqsReceiver:
    """Implements ``fanfetch.ports.MessageSource`` on one SQS queue URL."""

    def __init__(self, client: Any, queue_url: str):
        self._client = client
        self.queue_url = queue_url

    def visibility_timeout_s(self) -> int:
        """The queue's VisibilityTimeout (at least 1 s). Other errors than a missing queue are raised as botocore's."""
        try:
            attributes = self._client.get_queue_attributes(QueueUrl=self.queue_url,
                                                           AttributeNames=["VisibilityTimeout"])["Attributes"]
        except ClientError as exc:
            if _code(exc) in _NO_QUEUE:
                raise self._missing() from None
            raise
        return max(1, int(attributes.get("VisibilityTimeout", "30")))

    def receive(self, count: int, *, wait_s: int) -> list[dict[str, Any]]:
        """Up to ``count`` messages, waiting up to ``wait_s`` for the first, with the attributes the worker reads
        (ApproximateReceiveCount for the last-delivery rule, SentTimestamp)."""
        try:
            response = self._client.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=count, WaitTimeSeconds=wait_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"])
        except (ClientError, BotoCoreError) as exc:
            raise self._classify(exc) from exc
        return list(response.get("Messages", []))

    def delete(self, handles: Mapping[str, str]) -> tuple[int, list[str]]:
        try:
            response = self._client.delete_message_batch(
                QueueUrl=self.queue_url, Entries=[{"Id": i, "ReceiptHandle": h} for i, h in handles.items()])
        except (ClientError, BotoCoreError) as exc:
            raise self._classify(exc) from exc
        return len(response.get("Successful", [])), [str(f.get("Id")) for f in response.get("Failed", [])]

    def change_visibility(self, handles: Mapping[str, str], seconds: int) -> tuple[int, list[tuple[str, str]]]:
        entries = [{"Id": i, "ReceiptHandle": h, "VisibilityTimeout": seconds} for i, h in handles.items()]
        try:
            response = self._client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            raise self._classify(exc) from exc
        return (len(response.get("Successful", [])),
                [(str(f.get("Id")), str(f.get("Code"))) for f in response.get("Failed", [])])

    def _missing(self) -> InputError:
        return InputError(f"queue {self.queue_url} does not exist")

    def _classify(self, exc: ClientError | BotoCoreError) -> InputError | QueueError:
        code = _code(exc)
        return self._missing() if code in _NO_QUEUE else QueueError(code)


def _code(exc: BaseException) -> str:
    """AWS's code, or the class of an error AWS did not answer (a timeout, a dropped connection)."""
    return error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__

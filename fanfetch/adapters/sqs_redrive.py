"""Moves a dead-letter queue's messages back to the work queue: SQS's StartMessageMoveTask where the
endpoint has it, else receive / send / delete by hand, deleting a message only once its copy is sent."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.aws_errors import error_code
from fanfetch.errors import FanfetchError, InputError
from fanfetch.ports import RedriveReport

__all__ = ["SqsRedrive", "MOVE_TASK_UNAVAILABLE"]

# Error codes meaning "this endpoint (or this role) cannot run a move task here" — fall back to moving by
# hand. moto's server answers a bare HTTP 500 ("500"); SQS-compatible brokers use the others; AWS says
# UnsupportedOperation / InvalidParameterValue when the source is not a DLQ of a standard queue, and
# AccessDenied when the role may not start move tasks but may receive and send.
MOVE_TASK_UNAVAILABLE = frozenset({
    "500", "501", "NotImplemented", "InvalidAction", "UnknownOperationException", "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation", "InvalidParameterValue", "AccessDenied",
    "AccessDeniedException",
})
_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_ATTRIBUTE_FIELDS = ("DataType", "StringValue", "BinaryValue")


class SqsRedrive:
    """Implements ``fanfetch.ports.DeadLetterMover``.

    ``move_client`` makes the StartMessageMoveTask call; give it a client without retries, so an endpoint
    that answers 500 (moto) falls back at once instead of after a retry schedule.
    """

    def __init__(self, client: Any, *, move_client: Any | None = None, wait_time_s: int = 1,
                 visibility_timeout_s: int = 60, max_send_attempts: int = 3):
        self._client = client
        self._move_client = move_client or client
        self._wait_time_s = wait_time_s
        self._visibility_timeout_s = visibility_timeout_s
        self._max_send_attempts = max_send_attempts

    def redrive(self, *, dlq_url: str, queue_url: str) -> RedriveReport:
        dlq = self._attributes(dlq_url, "QueueArn", "ApproximateNumberOfMessages")
        destination = self._attributes(queue_url, "QueueArn")
        try:
            task = self._move_client.start_message_move_task(SourceArn=dlq["QueueArn"],
                                                              DestinationArn=destination["QueueArn"])
        except ClientError as exc:
            if error_code(exc) not in MOVE_TASK_UNAVAILABLE:
                raise FanfetchError(f"cannot start a message move task: {error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise FanfetchError(f"cannot start a message move task: {type(exc).__name__}") from exc
        else:
            return RedriveReport(method="move-task", moved=int(dlq.get("ApproximateNumberOfMessages", 0)),
                                 task_handle=str(task.get("TaskHandle", "")) or None)
        return self._move_by_hand(dlq_url, queue_url)

    def _attributes(self, url: str, *names: str) -> dict[str, str]:
        try:
            return dict(self._client.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))["Attributes"])
        except ClientError as exc:
            if error_code(exc) in _NO_QUEUE:
                raise InputError(f"queue {url} does not exist") from None
            raise FanfetchError(f"cannot read queue {url}: {error_code(exc)}") from exc
        except BotoCoreError as exc:
            raise FanfetchError(f"cannot read queue {url}: {type(exc).__name__}") from exc

    def _move_by_hand(self, dlq_url: str, queue_url: str) -> RedriveReport:
        moved = failed = not_deleted = 0
        while True:
            try:
                messages = self._client.receive_message(
                    QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=self._wait_time_s,
                    VisibilityTimeout=self._visibility_timeout_s, MessageAttributeNames=["All"],
                ).get("Messages", [])
            except (ClientError, BotoCoreError) as exc:
                code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
                raise FanfetchError(f"cannot receive from {dlq_url} after moving {moved}: {code}") from exc
            if not messages:
                break
            sent_ids = self._send(queue_url, messages)
            failed += len(messages) - len(sent_ids)
            moved += len(sent_ids)
            not_deleted += self._delete(dlq_url, [(i, messages[int(i)]["ReceiptHandle"]) for i in sorted(sent_ids)])
            if not sent_ids:
                break  # nothing goes through: stop rather than hide the whole DLQ behind the visibility timeout
        return RedriveReport(method="receive-send-delete", moved=moved, failed=failed, not_deleted=not_deleted)

    def _send(self, queue_url: str, messages: list[dict[str, Any]]) -> set[str]:
        """Send copies (body and attributes unchanged); return the ids (list positions) that were sent."""
        pending: dict[str, dict[str, Any]] = {}
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            attributes = {name: {k: v for k, v in value.items() if k in _ATTRIBUTE_FIELDS}
                          for name, value in (message.get("MessageAttributes") or {}).items()}
            if attributes:
                entry["MessageAttributes"] = attributes
            pending[entry["Id"]] = entry
        sent: set[str] = set()
        for _ in range(self._max_send_attempts):
            try:
                response = self._client.send_message_batch(QueueUrl=queue_url, Entries=list(pending.values()))
            except (ClientError, BotoCoreError):
                continue  # nothing of this call was sent: try the same entries again
            sent.update(str(s["Id"]) for s in response.get("Successful", []))
            pending = {f["Id"]: pending[f["Id"]] for f in response.get("Failed", []) if not f.get("SenderFault")}
            if not pending:
                break
        return sent

    def _delete(self, dlq_url: str, handles: list[tuple[str, str]]) -> int:
        """Delete the sent messages from the DLQ; return how many could not be deleted."""
        if not handles:
            return 0
        try:
            response = self._client.delete_message_batch(
                QueueUrl=dlq_url, Entries=[{"Id": i, "ReceiptHandle": h} for i, h in handles])
        except (ClientError, BotoCoreError):
            return len(handles)
        return len(response.get("Failed", []))

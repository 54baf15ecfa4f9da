"""A stand-in for Lambda's SQS event source mapping, for end-to-end tests and the fleet bench over real HTTP.

It does what the managed poller does: receive up to ``batch_size`` (≤ 10) messages, invoke the handler with
a Lambda-shaped event (message attributes and receive counts included), delete only the records not
reported in ``batchItemFailures`` (all of them stay when the invocation raises), and let the rest reappear
after the visibility timeout, so the queue's redrive policy moves repeat failures to the DLQ. Several
pollers (threads or processes, one per "container") may share one queue: each stops once the queue holds
nothing, visible or in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["lambda_event", "pump", "queue_depth"]

MAX_ERRORS_KEPT = 20  # per pump: enough to see what failed, bounded for a long run


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    """An SQS ``MessageAttributeValue`` as the Lambda event spells it (camelCase)."""
    out: dict[str, Any] = {"dataType": value["DataType"], "stringListValues": [], "binaryListValues": []}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = value["BinaryValue"]
    return out


def lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """The event Lambda passes the handler for ``messages`` (ReceiveMessage's shape)."""
    return {"Records": [
        {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
         "attributes": m.get("Attributes", {}),
         "messageAttributes": {k: _attribute(v) for k, v in m.get("MessageAttributes", {}).items()},
         "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region}
        for m in messages]}


def queue_depth(sqs: Any, url: str) -> int:
    """Messages in the queue, visible or in flight."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def pump(sqs: Any, queue_url: str, handler: Callable[[dict, Any], dict], context_factory: Callable[[], Any], *,
         timeout_s: float = 60.0, batch_size: int = 10, wait_time_s: int = 1) -> dict[str, Any]:
    """Deliver batches until the queue is empty (or ``timeout_s`` passes); return counters.

    Counters: ``invocations``, ``deleted``, ``returned`` (records left for the visibility timeout),
    ``failed_invocations`` (the handler raised: Lambda returns the whole batch) and ``errors`` (the first
    few of those, ``"Type: message"``).
    """
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stats: dict[str, Any] = {"invocations": 0, "deleted": 0, "returned": 0, "failed_invocations": 0, "errors": []}
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=wait_time_s,
                                       AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if not messages:
            if queue_depth(sqs, queue_url) == 0:
                return stats
            continue
        stats["invocations"] += 1
        try:
            response = handler(lambda_event(messages, arn), context_factory())
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        except Exception as exc:  # the invocation failed: Lambda returns the whole batch to the queue
            failed = {m["MessageId"] for m in messages}
            stats["failed_invocations"] += 1
            if len(stats["errors"]) < MAX_ERRORS_KEPT:
                stats["errors"].append(f"{type(exc).__name__}: {exc}"[:500])
        done = [m for m in messages if m["MessageId"] not in failed]
        stats["returned"] += len(messages) - len(done)
        if done:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
            stats["deleted"] += len(done)
    raise AssertionError(f"queue not drained within {timeout_s} s: {stats}")

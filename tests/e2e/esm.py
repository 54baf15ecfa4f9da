"""A stand-in for Lambda's SQS event source mapping, for end-to-end tests over real HTTP.

It does what the managed poller does: receive up to 10 messages, invoke the handler with a
Lambda-shaped event, delete only the records not reported in ``batchItemFailures`` (all of them
stay when the invocation raises), and let the rest reappear after the visibility timeout, so the
queue's redrive policy moves repeat failures to the DLQ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def _event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    return {"Records": [
        {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
         "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
         "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "us-east-1"}
        for m in messages]}


def _depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def pump(sqs: Any, queue_url: str, handler: Callable[[dict, Any], dict], context_factory: Callable[[], Any], *,
         timeout_s: float = 60.0) -> dict[str, int]:
    """Deliver batches until the queue is empty (or ``timeout_s`` passes); return counters."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stats = {"invocations": 0, "deleted": 0, "returned": 0}
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       AttributeNames=["All"]).get("Messages", [])
        if not messages:
            if _depth(sqs, queue_url) == 0:
                return stats
            continue
        stats["invocations"] += 1
        try:
            response = handler(_event(messages, arn), context_factory())
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        except Exception:  # the invocation failed: Lambda returns the whole batch to the queue
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        stats["returned"] += len(messages) - len(done)
        if done:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
            stats["deleted"] += len(done)
    raise AssertionError(f"queue not drained within {timeout_s} s: {stats}")

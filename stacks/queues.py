"""The work queue (one message per group) and its dead-letter queue, both encrypted and TLS-only."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

__all__ = ["SOURCE_RETENTION_DAYS", "DLQ_RETENTION_DAYS", "MAX_MESSAGE_BYTES", "WorkQueues"]

SOURCE_RETENTION_DAYS = 4  # the SQS default
# The maximum SQS allows, and longer than the source queue's: a message's age carries over into the DLQ
# (standard queues keep the original enqueue timestamp), so a shorter DLQ retention could drop it at once.
DLQ_RETENTION_DAYS = 14
# SQS's largest message (1 MiB since 2025; body and attributes together), set on both queues rather than left
# to a default: a dead-lettered message is a group message of up to 256 KiB (the producer's own ceiling,
# fanfetch.core.messages.SQS_MAX_MESSAGE_BYTES, which keeps a batch of 10 under Lambda's 6 MB payload) plus
# its reason attributes, and `fanfetch redrive` sends it back to the work queue with those attributes.
MAX_MESSAGE_BYTES = 1_048_576


class WorkQueues(Construct):
    """Attributes: ``queue`` (work, redrives to the DLQ) and ``dead_letter_queue``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, visibility_timeout_s: int, max_receive_count: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(DLQ_RETENTION_DAYS),
            max_message_size_bytes=MAX_MESSAGE_BYTES,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(SOURCE_RETENTION_DAYS),
            max_message_size_bytes=MAX_MESSAGE_BYTES,
            visibility_timeout=Duration.seconds(visibility_timeout_s),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=max_receive_count
            ),
        )

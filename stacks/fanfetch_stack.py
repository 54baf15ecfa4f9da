"""``FanfetchStack``: composes storage, queues, functions, schedule and monitoring, and wires the grants."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks.dashboard import Dashboard
from stacks.functions import FanfetchFunction, ProducerFunction, WorkerFunction
from stacks.ledger import JobLedger
from stacks.monitoring import Monitoring
from stacks.queues import WorkQueues
from stacks.schedule import ProducerSchedule
from stacks.settings import StackSettings
from stacks.storage import Storage

__all__ = [
    "FanfetchStack",
    "PRODUCER_S3_ACTIONS",
    "WORKER_S3_ACTIONS",
    "PRODUCER_LEDGER_ACTIONS",
    "WORKER_LEDGER_ACTIONS",
]

# Explicit actions instead of bucket.grant_read/grant_read_write, which add wildcards (s3:GetObject*,
# s3:List*) and deletes the worker never needs.
PRODUCER_S3_ACTIONS = ("s3:GetObject",)  # read manifests
WORKER_S3_ACTIONS = (
    "s3:GetObject",  # also HeadObject: the resume check ("already merged?")
    "s3:PutObject",  # also Create/UploadPart/CompleteMultipartUpload
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
# DynamoDB has no IAM action of its own for TransactWriteItems: each Put/Update inside it is authorized as
# PutItem/UpdateItem (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
PRODUCER_LEDGER_ACTIONS = (
    "dynamodb:PutItem",  # open_job: the job's counter shards (in transactions) and its item, if absent
    "dynamodb:GetItem",  # open_job: read back a job opened before (idempotent producer retries)
    "dynamodb:Query",  # open_job: a job opened before reports its counters (the sum of its shards)
)
WORKER_LEDGER_ACTIONS = (
    "dynamodb:PutItem",  # the group and output items, inside the verdict transaction
    "dynamodb:UpdateItem",  # a counter shard (in the transaction); the job's finish and announcement marks
    "dynamodb:GetItem",  # the verdict's shard, the job, last validators of an output
    "dynamodb:Query",  # a job's shards (counters) and groups (the results manifest), page by page
)


class FanfetchStack(Stack):
    """Producer Lambda -> SQS (+DLQ) -> worker Lambda -> S3, with a job ledger (DynamoDB) whose last verdict
    announces "Job Finished" on EventBridge, alarms and an optional schedule.

    ``settings`` defaults to the CDK context (see ``StackSettings``); attributes expose each construct.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: StackSettings | None = None, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings or StackSettings.from_context(self.node.try_get_context,
                                                               all_keys=self.node.get_all_context())
        cfg = self.settings

        self.storage = Storage(self, "Storage")
        bucket = self.storage.bucket
        self.queues = WorkQueues(
            self,
            "Queues",
            visibility_timeout_s=cfg.queue_visibility_timeout_s,
            max_receive_count=cfg.max_receive_count,
        )
        queue = self.queues.queue
        self.ledger = JobLedger(self, "Ledger")
        self.producer = ProducerFunction(
            self,
            "Producer",
            queue_url=queue.queue_url,
            bucket_name=bucket.bucket_name,
            ledger_table_name=self.ledger.table.table_name,
            output_prefix=cfg.output_prefix,
            allow_hosts=cfg.allow_hosts,
            redact_params=cfg.redact_params,
            memory_mb=cfg.producer_memory_mb,
            timeout_s=cfg.producer_timeout_s,
            log_retention_days=cfg.log_retention_days,
        )
        self.worker = WorkerFunction(
            self,
            "Worker",
            bucket_name=bucket.bucket_name,
            dead_letter_queue_url=self.queues.dead_letter_queue.queue_url,
            ledger_table_name=self.ledger.table.table_name,
            event_bus_name=self.ledger.event_bus_name,
            max_receive_count=cfg.max_receive_count,
            output_prefix=cfg.output_prefix,
            download_concurrency=cfg.download_concurrency,
            allow_hosts=cfg.allow_hosts,
            memory_mb=cfg.worker_memory_mb,
            timeout_s=cfg.worker_timeout_s,
            log_retention_days=cfg.log_retention_days,
            reserved_concurrency=cfg.worker_reserved_concurrency,
            per_host_concurrency=cfg.per_host_concurrency,
            per_host_rps=cfg.worker_per_host_rps,
            on_missing=cfg.on_missing,
            redact_params=cfg.redact_params,
            ephemeral_storage_mb=cfg.worker_ephemeral_storage_mb,
        )

        # Grants. The event source mapping grants the worker its queue consume permissions; the worker
        # sends only to the DLQ (failures that cannot heal, with their reason), never to the work queue.
        queue.grant_send_messages(self.producer.role)
        self.queues.dead_letter_queue.grant_send_messages(self.worker.role)
        _grant_bucket(self.producer, bucket, PRODUCER_S3_ACTIONS, "reads manifests under any key")
        _grant_preflight_write(self.producer, bucket, cfg.output_prefix)
        _grant_bucket(self.worker, bucket, WORKER_S3_ACTIONS, "writes merged objects under any key")
        _grant_table(self.producer, self.ledger.table, PRODUCER_LEDGER_ACTIONS)
        _grant_table(self.worker, self.ledger.table, WORKER_LEDGER_ACTIONS)
        # "Job finished" goes to one bus only (not events:PutEvents on every bus).
        self.worker.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["events:PutEvents"], resources=[self.ledger.event_bus_arn])
        )
        self.worker.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=cfg.batch_size,
                report_batch_item_failures=True,
                max_concurrency=cfg.worker_max_concurrency,
                enabled=cfg.worker_event_source,  # off: fixed-IP `fanfetch worker`s drain the queue instead
            )
        )

        self.schedule: ProducerSchedule | None = None
        if cfg.schedule_expression is not None and cfg.schedule_manifest is not None:
            self.schedule = ProducerSchedule(
                self,
                "Schedule",
                expression=cfg.schedule_expression,
                producer=self.producer.function,
                bucket_name=bucket.bucket_name,
                manifest_key=cfg.schedule_manifest,
            )

        self.monitoring = Monitoring(
            self,
            "Monitoring",
            queue=queue,
            dead_letter_queue=self.queues.dead_letter_queue,
            worker=self.worker.function,
            producer=self.producer.function,
            queue_age_threshold_s=cfg.effective_queue_age_alarm_s,
            alarm_email=cfg.alarm_email,
        )
        self.dashboard = Dashboard(
            self, "Dashboard", queue=queue, dead_letter_queue=self.queues.dead_letter_queue,
            worker=self.worker.function, producer=self.producer.function,
            alarms=list(self.monitoring.alarms.values()), queue_age_threshold_s=cfg.effective_queue_age_alarm_s,
        )

        CfnOutput(self, "QueueUrl", value=queue.queue_url, description="Work queue (one message per group)")
        CfnOutput(
            self,
            "DeadLetterQueueUrl",
            value=self.queues.dead_letter_queue.queue_url,
            description="Groups that failed maxReceiveCount times",
        )
        CfnOutput(self, "BucketName", value=bucket.bucket_name, description="Output bucket (retained)")
        CfnOutput(
            self,
            "LedgerTableName",
            value=self.ledger.table.table_name,
            description="Job ledger: progress per job, verdict per group (retained)",
        )
        CfnOutput(self, "ProducerFunctionName", value=self.producer.function.function_name)
        CfnOutput(self, "WorkerFunctionName", value=self.worker.function.function_name)
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.monitoring.topic.topic_arn,
            description="Subscribe to receive alarm notifications",
        )


def _grant_bucket(fn: FanfetchFunction, bucket: s3.IBucket, actions: tuple[str, ...], why: str) -> None:
    """Object actions on every key plus ListBucket (so a missing key is a 404, not an opaque 403)."""
    fn.role.add_to_principal_policy(
        iam.PolicyStatement(actions=list(actions), resources=[bucket.arn_for_objects("*")])
    )
    fn.role.add_to_principal_policy(
        iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
    )
    stack = Stack.of(bucket)
    bucket_logical_id = stack.resolve(stack.get_logical_id(bucket.node.default_child))  # type: ignore[arg-type]
    NagSuppressions.add_resource_suppressions(
        fn.role,
        [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason=f"The {fn.node.id.lower()} {why} in its own bucket; object ARNs need the /* suffix. "
                "Actions are listed explicitly (no action wildcards).",
                applies_to=[f"Resource::<{bucket_logical_id}.Arn>/*"],
            )
        ],
        apply_to_children=True,
    )


def _grant_preflight_write(fn: FanfetchFunction, bucket: s3.IBucket, output_prefix: str) -> None:
    """The producer's pre-flight proves the output bucket takes writes: PutObject under the bookkeeping
    prefix only (``<outputPrefix>_jobs/*``), never over outputs."""
    prefix = output_prefix.strip("/")
    fn.role.add_to_principal_policy(iam.PolicyStatement(
        actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{prefix + '/' if prefix else ''}_jobs/*")]))
    stack = Stack.of(bucket)
    bucket_logical_id = stack.resolve(stack.get_logical_id(bucket.node.default_child))  # type: ignore[arg-type]
    NagSuppressions.add_resource_suppressions(fn.role, [NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="The producer's pre-flight writes _jobs/<job>/preflight.json (one object per job) under the "
               "bookkeeping prefix only; the job id is not known at deploy time.",
        applies_to=[f"Resource::<{bucket_logical_id}.Arn>/{prefix + '/' if prefix else ''}_jobs/*"])],
        apply_to_children=True)


def _grant_table(fn: FanfetchFunction, table: dynamodb.ITable, actions: tuple[str, ...]) -> None:
    """Item actions on the table itself (it has no indexes, so no ``/index/*`` resource is needed)."""
    fn.role.add_to_principal_policy(iam.PolicyStatement(actions=list(actions), resources=[table.table_arn]))

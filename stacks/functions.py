"""The producer and worker Lambda functions: locally bundled code, own role, own log group with retention."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.bundling import LAMBDA_RUNTIME, build_lambda_code

__all__ = ["HANDLER", "POWERTOOLS_SERVICE_NAME", "FanfetchFunction", "ProducerFunction", "WorkerFunction"]

HANDLER = "handler.handler"
POWERTOOLS_SERVICE_NAME = "fanfetch"

_RETENTION_BY_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


class FanfetchFunction(Construct):
    """One Python function. Attributes: ``function``, ``role``, ``log_group``.

    The role gets no AWS managed policy: log writing is granted on this function's log group only, and the
    stack adds each data permission explicitly.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        asset_name: str,
        description: str,
        memory_mb: int,
        timeout_s: int,
        log_retention_days: int,
        environment: Mapping[str, str],
        reserved_concurrency: int | None = None,
        ephemeral_storage_mb: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=_RETENTION_BY_DAYS[log_retention_days],
            # Logs are diagnostics bounded by retention; the data worth keeping lives in the bucket.
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the fanfetch {asset_name} function",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=LAMBDA_RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=HANDLER,
            code=build_lambda_code(asset_name),
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_s),
            role=self.role,
            log_group=self.log_group,
            reserved_concurrent_executions=reserved_concurrency,
            environment=dict(environment),
            ephemeral_storage_size=Size.mebibytes(ephemeral_storage_mb) if ephemeral_storage_mb else None,
        )


class ProducerFunction(FanfetchFunction):
    """Reads a manifest from the bucket and enqueues one message per group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue_url: str,
        bucket_name: str,
        ledger_table_name: str,
        output_prefix: str,
        memory_mb: int,
        timeout_s: int,
        log_retention_days: int,
        allow_hosts: str = "",
        redact_params: str = "",
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            asset_name="producer",
            description="fanfetch producer: manifest -> one SQS message per group",
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            log_retention_days=log_retention_days,
            environment={
                "QUEUE_URL": queue_url,
                "BUCKET_NAME": bucket_name,
                "LEDGER_TABLE": ledger_table_name,  # opens each job before enqueueing its groups
                # the same prefix as the worker's: the job's results location (the "Job Finished" event) is
                # derived from it when the job is opened, and must name where the worker writes results.jsonl
                "OUTPUT_PREFIX": output_prefix,
                # the workers' allow-list: the pre-flight refuses a job whose hosts the workers would refuse
                "FANFETCH_ALLOW_HOSTS": allow_hosts,
                "FANFETCH_REDACT_PARAMS": redact_params,  # the worker's too: its refusals name URLs
                "POWERTOOLS_SERVICE_NAME": POWERTOOLS_SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_SERVICE_NAME,
            },
        )


class WorkerFunction(FanfetchFunction):
    """Downloads and merges one group per SQS record; reports partial batch failures.

    A failure that cannot heal is sent to the DLQ by the worker itself (``DLQ_URL``) with its reason; it
    needs ``FANFETCH_MAX_RECEIVE_COUNT`` to know a delivery is the queue's last one.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        dead_letter_queue_url: str,
        ledger_table_name: str,
        event_bus_name: str,
        max_receive_count: int,
        output_prefix: str,
        download_concurrency: int,
        allow_hosts: str,
        memory_mb: int,
        timeout_s: int,
        log_retention_days: int,
        reserved_concurrency: int | None,
        per_host_concurrency: int | None = None,
        per_host_rps: float | None = None,
        on_missing: str = "fail",
        ephemeral_storage_mb: int | None = None,
        redact_params: str = "",
    ) -> None:
        politeness = {}  # per-host limits, per invocation; fleet-wide bound = max concurrency x these
        if per_host_concurrency is not None:
            politeness["FANFETCH_PER_HOST_CONCURRENCY"] = str(per_host_concurrency)
        if per_host_rps is not None:
            politeness["FANFETCH_PER_HOST_RPS"] = f"{per_host_rps:g}"
        super().__init__(
            scope,
            construct_id,
            asset_name="worker",
            description="fanfetch worker: SQS group message -> downloads -> merged object in S3",
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            log_retention_days=log_retention_days,
            reserved_concurrency=reserved_concurrency,
            ephemeral_storage_mb=ephemeral_storage_mb,  # /tmp: the worker measures its spool budget there
            environment={
                "BUCKET_NAME": bucket_name,
                "DLQ_URL": dead_letter_queue_url,
                "LEDGER_TABLE": ledger_table_name,  # records each group's verdict
                "EVENT_BUS_NAME": event_bus_name,  # where the verdict that finishes a job announces it
                "FANFETCH_MAX_RECEIVE_COUNT": str(max_receive_count),
                "OUTPUT_PREFIX": output_prefix,
                "FANFETCH_CONCURRENCY": str(download_concurrency),
                "FANFETCH_ALLOW_HOSTS": allow_hosts,
                "FANFETCH_ON_MISSING": on_missing,  # groups that name no on_missing of their own
                "FANFETCH_REDACT_PARAMS": redact_params,  # extra secret query parameters, never logged
                "POWERTOOLS_SERVICE_NAME": POWERTOOLS_SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_SERVICE_NAME,
                **politeness,
            },
        )

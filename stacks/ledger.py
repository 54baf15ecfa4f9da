"""The job ledger table (exact progress per job and group) and the event bus "job finished" is announced on."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

__all__ = ["JobLedger", "PARTITION_KEY", "SORT_KEY", "EVENT_BUS_NAME"]

# Must match fanfetch.adapters.ledger_dynamodb_items (an infra test checks): items are
# (JOB#<job>, JOB), (JOB#<job>, GROUP#<group>) and (OUT#<key>, OUT).
PARTITION_KEY = "pk"
SORT_KEY = "sk"
# "Job Finished" goes to the account's default bus: rules there need no extra resources to match it.
EVENT_BUS_NAME = "default"


class JobLedger(Construct):
    """Attributes: ``table`` (the ledger), ``event_bus_name`` and ``event_bus_arn`` (where "job finished" goes).

    On-demand billing (a job's writes come in bursts), point-in-time recovery, KMS encryption with the AWS
    managed key. Retained on stack deletion, like the bucket: it holds the validators incremental runs use.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.event_bus_name = EVENT_BUS_NAME
        self.event_bus_arn = Stack.of(self).format_arn(
            service="events", resource="event-bus", resource_name=EVENT_BUS_NAME
        )

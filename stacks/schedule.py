"""Optional EventBridge schedule that runs the producer on a fixed manifest (e.g. a nightly refresh)."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

__all__ = ["ProducerSchedule", "manifest_url"]


def manifest_url(bucket_name: str, manifest_key: str) -> str:
    """The producer's event field: ``s3://<bucket>/<key>`` (``bucket_name`` may be a CDK token)."""
    return f"s3://{bucket_name}/{manifest_key}"


class ProducerSchedule(Construct):
    """Attribute: ``rule``, invoking the producer with ``{"manifest": "s3://<bucket>/<key>", "refresh": true,
    "scheduled_at": <the schedule event's time>}`` (each scheduled run re-checks the origin and rewrites only
    what changed; the event's time names the run, so a retried or duplicated delivery is the same job)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        expression: str,
        producer: lambda_.IFunction,
        bucket_name: str,
        manifest_key: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description="Runs the fanfetch producer on the scheduled manifest",
            schedule=events.Schedule.expression(expression),
            # Invoked asynchronously: Lambda retries a failed run twice and EventBridge may deliver an event
            # twice. Both carry the same event time, from which the producer derives the run's job id: a
            # retry re-enqueues into the same job (counted once per group), never starts a second one.
            targets=[
                targets.LambdaFunction(
                    producer,
                    event=events.RuleTargetInput.from_object(
                        {"manifest": manifest_url(bucket_name, manifest_key), "refresh": True,
                         "scheduled_at": events.EventField.time}
                    ),
                )
            ],
        )

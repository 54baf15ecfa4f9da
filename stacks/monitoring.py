"""CloudWatch alarms on the pipeline's failure signals, sent to an encrypted SNS topic."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

__all__ = ["Monitoring"]

_PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    """Attributes: ``topic`` (alarm actions), ``key`` (its KMS key) and ``alarms`` (name -> Alarm).

    Alarms: a message in the DLQ, any worker or producer error, any worker throttle, and the oldest queued
    message older than ``queue_age_threshold_s`` (the queue is not draining).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        worker: lambda_.IFunction,
        producer: lambda_.IFunction,
        queue_age_threshold_s: int,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        # SNS encryption needs a customer managed key: the AWS managed aws/sns key's policy cannot let
        # CloudWatch encrypt, so alarm notifications to a topic using it would be dropped.
        self.key = kms.Key(
            self,
            "TopicKey",
            description="Encrypts the fanfetch alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        self.topic = sns.Topic(self, "AlarmTopic", master_key=self.key, enforce_ssl=True)
        if alarm_email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))

        self.alarms: dict[str, cloudwatch.Alarm] = {
            "DeadLetters": cloudwatch.Alarm(
                self,
                "DeadLettersAlarm",
                alarm_description="Messages are in the dead-letter queue: groups that cannot succeed (reason "
                "in their message attributes) or that failed maxReceiveCount times.",
                metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=_PERIOD, statistic="Maximum"
                ),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            "WorkerErrors": _count_alarm(
                self,
                "WorkerErrorsAlarm",
                worker.metric_errors(period=_PERIOD),
                "The worker function raised (an invocation failed as a whole).",
            ),
            "WorkerThrottles": _count_alarm(
                self,
                "WorkerThrottlesAlarm",
                worker.metric_throttles(period=_PERIOD),
                "The worker was throttled: reserved or account concurrency is "
                "below the event source's maximum concurrency.",
            ),
            "ProducerErrors": _count_alarm(
                self,
                "ProducerErrorsAlarm",
                producer.metric_errors(period=_PERIOD),
                "The producer function failed: a job was not (fully) enqueued.",
            ),
            "QueueAge": cloudwatch.Alarm(
                self,
                "QueueAgeAlarm",
                alarm_description=f"The oldest work message is older than {queue_age_threshold_s} s: "
                "the queue is not draining (worker failing, throttled or under-provisioned).",
                metric=queue.metric_approximate_age_of_oldest_message(period=_PERIOD, statistic="Maximum"),
                threshold=queue_age_threshold_s,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        }
        action = cw_actions.SnsAction(self.topic)
        for alarm in self.alarms.values():
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)


def _count_alarm(
    scope: Construct, construct_id: str, metric: cloudwatch.Metric, description: str
) -> cloudwatch.Alarm:
    """Alarm when the summed count over one period is above zero."""
    return cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_description=description,
        metric=metric.with_(statistic="Sum"),
        threshold=0,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )

"""A CloudWatch dashboard for one fanfetch stack: the queue, the worker, and the worker's own EMF metrics."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from fanfetch.adapters.observability import DEFAULT_NAMESPACE, METRIC_UNITS, SERVICE

__all__ = ["Dashboard"]

_PERIOD = Duration.minutes(1)
_H = 6  # widget height (grid units); a row is 24 units wide


class Dashboard(Construct):
    """Attribute: ``dashboard``. Rows: queue (depth, DLQ, age), worker (invocations, errors, throttles,
    duration, concurrency), job throughput from the worker's EMF metrics (files, bytes, groups,
    retries, group duration), and the alarms' states.

    ``metrics_namespace`` must match the worker's ``POWERTOOLS_METRICS_NAMESPACE``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        worker: lambda_.IFunction,
        producer: lambda_.IFunction | None = None,
        alarms: Sequence[cloudwatch.IAlarm] = (),
        queue_age_threshold_s: int | None = None,
        metrics_namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        super().__init__(scope, construct_id)

        def emf(name: str, statistic: str = "Sum", label: str | None = None) -> cloudwatch.Metric:
            if name not in METRIC_UNITS:
                raise ValueError(f"{name!r} is not a metric the worker emits ({', '.join(METRIC_UNITS)})")
            return cloudwatch.Metric(namespace=metrics_namespace, metric_name=name,
                                     dimensions_map={"service": SERVICE}, statistic=statistic, period=_PERIOD,
                                     label=label or name)

        age_annotations = (
            [cloudwatch.HorizontalAnnotation(value=queue_age_threshold_s, label="alarm threshold")]
            if queue_age_threshold_s is not None else None
        )
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(cloudwatch.TextWidget(
            markdown="## fanfetch\nProducer → SQS work queue → worker Lambda → S3. Throughput rows come from "
                     f"the worker's EMF metrics (namespace `{metrics_namespace}`); logs carry `job_id` and "
                     "`group_id` (CloudWatch Logs Insights: `filter job_id = \"…\"`).",
            width=24, height=2,
        ))
        self.dashboard.add_widgets(
            _graph("Work queue: messages", [
                queue.metric_approximate_number_of_messages_visible(period=_PERIOD, statistic="Maximum",
                                                                    label="waiting"),
                queue.metric_approximate_number_of_messages_not_visible(period=_PERIOD, statistic="Maximum",
                                                                        label="in flight"),
            ]),
            _graph("Age of oldest message (s)", [
                queue.metric_approximate_age_of_oldest_message(period=_PERIOD, statistic="Maximum", label="age"),
            ], annotations=age_annotations),
            _graph("Dead-letter queue: messages", [
                dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=_PERIOD, statistic="Maximum", label="dead letters"),
            ]),
        )
        self.dashboard.add_widgets(
            _graph("Worker: invocations, errors, throttles", [
                worker.metric_invocations(period=_PERIOD, statistic="Sum", label="invocations"),
                worker.metric_errors(period=_PERIOD, statistic="Sum", label="errors"),
                worker.metric_throttles(period=_PERIOD, statistic="Sum", label="throttles"),
            ]),
            _graph("Worker duration (ms)", [
                worker.metric_duration(period=_PERIOD, statistic="Average", label="average"),
                worker.metric_duration(period=_PERIOD, statistic="p99", label="p99"),
                worker.metric_duration(period=_PERIOD, statistic="Maximum", label="max"),
            ]),
            _graph("Worker concurrent executions", [
                worker.metric("ConcurrentExecutions", period=_PERIOD, statistic="Maximum", label="concurrent"),
            ]),
        )
        self.dashboard.add_widgets(
            _graph("Files downloaded / min", [emf("Files")], right=[emf("Bytes", label="bytes stored")]),
            _graph("Groups / min", [emf("GroupsOk", label="stored"), emf("GroupsFailed", label="failed"),
                                    emf("GroupsSkipped", label="already stored")]),
            _graph("Retries and failures / min", [emf("Retries", label="retries")],
                   right=[emf("GroupsFailed", label="groups failed")]),
        )
        bottom: list[cloudwatch.IWidget] = [
            _graph("Group duration (ms)", [emf("GroupDurationMs", "p50", "p50"), emf("GroupDurationMs", "p99", "p99"),
                                           emf("GroupDurationMs", "Maximum", "max")], width=12),
        ]
        if producer is not None:
            bottom.append(_graph("Producer: invocations, errors", [
                producer.metric_invocations(period=_PERIOD, statistic="Sum", label="invocations"),
                producer.metric_errors(period=_PERIOD, statistic="Sum", label="errors"),
            ], width=12))
        self.dashboard.add_widgets(*bottom)
        if alarms:
            self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=24,
                                                                    height=3))


def _graph(
    title: str,
    left: Sequence[cloudwatch.IMetric],
    *,
    right: Sequence[cloudwatch.IMetric] = (),
    annotations: Sequence[cloudwatch.HorizontalAnnotation] | None = None,
    width: int = 8,
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title, left=list(left), right=list(right) or None, left_annotations=list(annotations or []) or None,
        width=width, height=_H, left_y_axis=cloudwatch.YAxisProps(min=0), right_y_axis=cloudwatch.YAxisProps(min=0),
    )

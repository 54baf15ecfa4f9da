"""The stack's CloudWatch dashboard: one per stack, graphing the queue, the DLQ, the worker and the
worker's own EMF metrics (bundling skipped). The body is parsed, with references as ``<id.attr>``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from fanfetch.adapters.observability import DEFAULT_NAMESPACE, METRIC_UNITS, SERVICE
from stacks import FanfetchStack
from tests.infra.conftest import logical_id


def _ref(part: Any) -> str:
    if "Ref" in part:
        return f"<{part['Ref']}>"
    resource, attribute = part["Fn::GetAtt"]
    return f"<{resource}.{attribute}>"


@pytest.fixture(scope="module")
def widgets(template: Template) -> list[dict[str, Any]]:
    [dashboard] = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    text = body if isinstance(body, str) else "".join(
        p if isinstance(p, str) else _ref(p) for p in body["Fn::Join"][1])
    return list(json.loads(text)["widgets"])


def _metrics(widgets: list[dict[str, Any]]) -> list[list[Any]]:
    """Every graphed metric as [namespace, name, dimension, value, ...] (options dicts dropped)."""
    return [[x for x in m if not isinstance(x, dict)]
            for w in widgets for m in w.get("properties", {}).get("metrics", [])]


def test_stack_has_one_dashboard(template: Template) -> None:
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_dashboard_graphs_queue_depth_age_and_dead_letters(
    widgets: list[dict[str, Any]], default_stack: FanfetchStack
) -> None:
    # GIVEN the synthesized stack WHEN reading the dashboard THEN the work queue's depth and age and the
    # DLQ's depth are graphed, by the queues' own names
    queue = f"<{logical_id(default_stack, default_stack.queues.queue)}.QueueName>"
    dlq = f"<{logical_id(default_stack, default_stack.queues.dead_letter_queue)}.QueueName>"
    metrics = _metrics(widgets)
    for expected in (
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue],
        ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", queue],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq],
    ):
        assert expected in metrics, expected


def test_queue_age_graph_marks_the_alarm_threshold(widgets: list[dict[str, Any]], default_stack: FanfetchStack) -> None:
    [age] = [w for w in widgets if w.get("properties", {}).get("title") == "Age of oldest message (s)"]
    [line] = age["properties"]["annotations"]["horizontal"]
    assert line["value"] == default_stack.settings.effective_queue_age_alarm_s


def test_dashboard_graphs_worker_invocations_errors_throttles_duration(
    widgets: list[dict[str, Any]], default_stack: FanfetchStack
) -> None:
    worker = f"<{logical_id(default_stack, default_stack.worker.function)}>"
    metrics = _metrics(widgets)
    for name in ("Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"):
        assert ["AWS/Lambda", name, "FunctionName", worker] in metrics, name


def test_dashboard_graphs_every_emf_metric_the_worker_emits(widgets: list[dict[str, Any]]) -> None:
    # THEN each metric fanfetch.adapters.observability emits is graphed in its namespace with the service dimension
    metrics = _metrics(widgets)
    for name in METRIC_UNITS:
        assert [DEFAULT_NAMESPACE, name, "service", SERVICE] in metrics, name
    assert {"Files", "Bytes", "GroupsFailed", "Retries"} <= set(METRIC_UNITS)


def test_dashboard_shows_every_alarm_state(widgets: list[dict[str, Any]], default_stack: FanfetchStack) -> None:
    [status] = [w for w in widgets if w["type"] == "alarm"]
    shown = set(status["properties"]["alarms"])
    assert shown == {f"<{logical_id(default_stack, a)}.Arn>" for a in default_stack.monitoring.alarms.values()}

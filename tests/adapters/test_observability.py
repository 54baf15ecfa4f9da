"""What the worker emits per group: a JSON log line with job and group ids (Powertools Logger) and
CloudWatch metrics as an EMF blob (Powertools Metrics), both read back from stdout."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from fanfetch.adapters.observability import (
    DEFAULT_NAMESPACE,
    METRIC_UNITS,
    SERVICE,
    log_group_result,
    make_logger,
    make_metrics,
    metrics_namespace,
    record_group_metrics,
)
from fanfetch.core.models import GroupResult, GroupStatus

STORED = GroupResult("station-1", GroupStatus.OK, "stations/1.csv", files=3, bytes=4096, attempts=5,
                     started_at=1000.0, finished_at=1002.5)
FAILED = GroupResult("station-2", GroupStatus.FAILED, "stations/2.csv", files=4, attempts=9,
                     error="HTTP 404 for https://example.org/x", retryable=False, started_at=1000.0, finished_at=1001.0)
SKIPPED = GroupResult("station-3", GroupStatus.OK, "stations/3.csv", files=6, bytes=900, attempts=0, skipped=True)


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    # Powertools keeps the metric set in class attributes shared by every Metrics instance: start empty.
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    m = make_metrics()
    m.clear_metrics()
    yield m
    m.clear_metrics()


def _logger() -> object:
    # Powertools binds a logger's stdout handler when a service name is first used; a fresh name per
    # test binds it to this test's captured stdout.
    return make_logger(service=f"{SERVICE}-test-{uuid.uuid4().hex[:8]}")


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_stored_group_is_one_info_json_line_with_job_and_group_ids(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a logger WHEN a stored group is logged
    log_group_result(_logger(), STORED, job_id="job-7")
    # THEN stdout holds one JSON object carrying the ids and the group's numbers
    [line] = _json_lines(capsys.readouterr().out)
    assert line["level"] == "INFO" and line["message"] == "group stored"
    assert (line["job_id"], line["group_id"], line["status"]) == ("job-7", "station-1", "ok")
    assert (line["files"], line["bytes"], line["attempts"], line["retries"]) == (3, 4096, 5, 2)
    assert line["duration_ms"] == 2500
    assert "error" not in line  # Powertools drops empty keys


def test_failed_group_is_a_warning_with_its_error(capsys: pytest.CaptureFixture[str]) -> None:
    log_group_result(_logger(), FAILED, job_id="job-7", duration_s=0.25, extra={"dead_lettered": True})
    [line] = _json_lines(capsys.readouterr().out)
    assert line["dead_lettered"] is True
    assert line["level"] == "WARNING" and line["message"] == "group failed"
    assert line["group_id"] == "station-2" and line["error"] == "HTTP 404 for https://example.org/x"
    assert line["retryable"] is False
    assert line["duration_ms"] == 250  # the explicit duration wins over the result's stamps


def test_metrics_flush_as_one_emf_blob_with_names_units_and_values(
    metrics: object, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the metrics of a stored, a failed and a skipped group
    for result in (STORED, FAILED, SKIPPED):
        record_group_metrics(metrics, result)  # type: ignore[arg-type]

    # WHEN flushed (what @metrics.log_metrics does at the end of an invocation)
    metrics.flush_metrics()  # type: ignore[attr-defined]

    # THEN stdout holds one EMF document in the fanfetch namespace, with every metric and its unit
    [blob] = _json_lines(capsys.readouterr().out)
    [directive] = blob["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert directive["Namespace"] == DEFAULT_NAMESPACE
    assert directive["Dimensions"] == [["service"]] and blob["service"] == SERVICE
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == dict(METRIC_UNITS)
    # AND only the fetched group adds files and bytes; retries are attempts beyond one per file
    assert sum(blob["Files"]) == 3 and sum(blob["Bytes"]) == 4096  # type: ignore[arg-type]
    assert sum(blob["GroupsOk"]) == 2 and sum(blob["GroupsFailed"]) == 1  # type: ignore[arg-type]
    assert sum(blob["GroupsSkipped"]) == 1  # type: ignore[arg-type]
    assert sum(blob["Retries"]) == (5 - 3) + (9 - 4)  # type: ignore[arg-type]
    assert sorted(blob["GroupDurationMs"]) == [1000.0, 2500.0]  # type: ignore[arg-type]  # skipped: none


def test_namespace_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              metrics: object) -> None:
    # GIVEN POWERTOOLS_METRICS_NAMESPACE set (as the stack sets it)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "fanfetch-prod")
    assert metrics_namespace() == "fanfetch-prod"
    assert metrics_namespace({}) == DEFAULT_NAMESPACE
    # WHEN metrics are made and flushed THEN they land in that namespace
    custom = make_metrics()
    record_group_metrics(custom, STORED)
    custom.flush_metrics()
    [blob] = _json_lines(capsys.readouterr().out)
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "fanfetch-prod"  # type: ignore[index]


def test_default_logger_is_the_fanfetch_service() -> None:
    assert make_logger().service == SERVICE

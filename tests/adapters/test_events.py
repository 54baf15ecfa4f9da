"""The EventBridge "Job Finished" adapter: delivered through a rule to SQS (moto), rejected entries retried
then raised as retryable, permanent rejections and call errors translated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from fanfetch.adapters.events import EventBridgeEvents
from fanfetch.core.ledger import JobRecord
from fanfetch.errors import PermanentPublishError, RetryablePublishError
from tests.fakes import FakeClock

_JOB = JobRecord(job_id="2024-05-01-nightly", total_groups=5, total_files=12, ok=4, failed=1, files=10,
                 bytes=12_345, changed=1, unchanged=3, started_at=1_714_532_400.0, finished_at=1_714_532_465.5,
                 results_location="s3://out/_jobs/2024-05-01-nightly/results.jsonl")
_PATTERN = json.dumps({"source": ["fanfetch"], "detail-type": ["Job Finished"]})


@pytest.fixture
def aws(aws_env) -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        yield boto3.client("events", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")


def _route_to_queue(events: Any, sqs: Any, *, bus: str, name: str) -> str:
    """A rule on ``bus`` matching fanfetch's job-finished events, targeting a new queue; returns its URL."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=_PATTERN)
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    return url


def _received(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_job_finished_reaches_a_rule_on_the_default_bus_with_the_summary(aws: tuple[Any, Any]) -> None:
    # GIVEN a rule on the default bus for fanfetch's "Job Finished" events, delivering to a queue
    events, sqs = aws
    url = _route_to_queue(events, sqs, bus="default", name="job-finished")
    # WHEN a finished job is announced
    EventBridgeEvents(events).job_finished(_JOB, results_location=_JOB.results_location)
    # THEN exactly one event arrives, carrying the summary, where the results manifest is, and the job's
    # idempotency key (a finisher that died after publishing publishes again: consumers dedupe on it)
    [event] = _received(sqs, url)
    assert (event["source"], event["detail-type"]) == ("fanfetch", "Job Finished")
    assert event["detail"] == {
        "idempotency_key": "2024-05-01-nightly/finished",
        "job_id": "2024-05-01-nightly",
        "status": "finished",
        "total_groups": 5,
        "total_files": 12,
        "ok": 4,
        "failed": 1,
        "files": 10,
        "bytes": 12_345,
        "changed": 1,
        "unchanged": 3,
        "started_at": "2024-05-01T03:00:00.000Z",
        "finished_at": "2024-05-01T03:01:05.500Z",
        "duration_s": 65.5,
        "results_location": "s3://out/_jobs/2024-05-01-nightly/results.jsonl",
    }


def test_the_event_goes_to_the_configured_bus_only(aws: tuple[Any, Any]) -> None:
    # GIVEN the same rule on the default bus and on a custom bus "jobs"
    events, sqs = aws
    events.create_event_bus(Name="jobs")
    on_default = _route_to_queue(events, sqs, bus="default", name="on-default")
    on_jobs = _route_to_queue(events, sqs, bus="jobs", name="on-jobs")
    # WHEN the adapter is configured for "jobs"
    EventBridgeEvents(events, bus_name="jobs").job_finished(_JOB, results_location="/dest/_jobs/x/results.jsonl")
    # THEN only the custom bus's rule sees it, with the location given
    assert [e["detail"]["results_location"] for e in _received(sqs, on_jobs)] == ["/dest/_jobs/x/results.jsonl"]
    assert _received(sqs, on_default) == []


def _failed_entry(code: str) -> dict[str, Any]:
    return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": "nope"}]}


def test_a_throttled_entry_is_sent_again_and_then_succeeds(aws_env) -> None:
    # GIVEN EventBridge accepts the call but throttles the entry twice
    client = boto3.client("events", region_name="us-east-1")
    clock = FakeClock()
    with Stubber(client) as stub:
        stub.add_response("put_events", _failed_entry("ThrottlingException"))
        stub.add_response("put_events", _failed_entry("InternalFailure"))
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]})
        # WHEN the job is announced
        EventBridgeEvents(client, clock=clock, rand=lambda: 0.5).job_finished(_JOB, results_location="r")
        # THEN the third call delivered it, after two backoff waits
        stub.assert_no_pending_responses()
    assert clock.sleeps == [0.1, 0.2]


def test_an_entry_rejected_every_time_is_a_retryable_error(aws_env) -> None:
    client = boto3.client("events", region_name="us-east-1")
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("put_events", _failed_entry("ThrottlingException"))
        with pytest.raises(RetryablePublishError, match="ThrottlingException"):
            EventBridgeEvents(client, max_attempts=3, clock=FakeClock()).job_finished(_JOB, results_location="r")
        stub.assert_no_pending_responses()


def test_an_entry_rejected_for_good_is_permanent_and_not_retried(aws_env) -> None:
    client = boto3.client("events", region_name="us-east-1")
    clock = FakeClock()
    with Stubber(client) as stub:
        stub.add_response("put_events", _failed_entry("NotAuthorizedForSourceException"))
        with pytest.raises(PermanentPublishError, match="NotAuthorizedForSourceException"):
            EventBridgeEvents(client, clock=clock).job_finished(_JOB, results_location="r")
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [("AccessDeniedException", PermanentPublishError), ("ResourceNotFoundException", PermanentPublishError),
     ("InternalException", RetryablePublishError)],
)
def test_call_errors_are_translated_by_code(aws_env, code: str, expected: type) -> None:
    client = boto3.client("events", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("put_events", service_error_code=code, http_status_code=400)
        with pytest.raises(expected, match=code):
            EventBridgeEvents(client).job_finished(_JOB, results_location="r")

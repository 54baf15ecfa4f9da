"""Failures that cannot heal go to the DLQ on first sight, with their reason; transient ones come back."""

from __future__ import annotations

import json

import pytest

from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.conftest import FakeLambdaContext, sqs_event


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"FANFETCH_MAX_RECEIVE_COUNT": "3"}


def _message(origin, group_id: str, years, station_id: int = 1000) -> str:
    urls = tuple(Source(origin.url_template.format(station_id=station_id, year=y)) for y in years)
    return encode_message("job7", Group(group_id=group_id, sources=urls, key=f"{group_id}.csv", merge=MergeMode.CSV))


def _dead(sqs, dlq):
    return sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])


def test_a_permanent_failure_is_dead_lettered_with_its_reason_and_acknowledged(worker):
    # GIVEN a group whose only file is a 404, beside a good one
    module, s3, sqs, dlq, origin = worker
    ghost = _message(origin, "ghost", [1800])
    event = sqs_event([ghost, _message(origin, "good", [2000, 2001])])
    # WHEN the worker handles the batch once
    response = module.handler(event, FakeLambdaContext())
    # THEN nothing comes back for a retry; the DLQ holds the ghost's message, unchanged, with the reason
    assert response == {"batchItemFailures": []}
    (dead,) = _dead(sqs, dlq)
    assert dead["Body"] == ghost
    assert "404" in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    assert dead["MessageAttributes"]["fanfetch-error-type"]["StringValue"] == "permanent"
    # AND a failure record sits beside the outputs
    record = json.loads(s3.get_object(Bucket="out", Key="_jobs/job7/failed/ghost.json")["Body"].read())
    assert record["status"] == "failed" and record["group"] == "ghost" and "404" in record["error"]
    assert origin.requests_for_year(1800) == 1  # no retry storm


def test_a_poison_message_is_dead_lettered_on_first_sight(worker):
    module, s3, sqs, dlq, origin = worker
    response = module.handler(sqs_event(['{"v": 9}']), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    (dead,) = _dead(sqs, dlq)
    assert "schema version" in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    assert s3.get_object(Bucket="out", Key="_jobs/_poison/msg-0.json")


def test_a_transient_failure_comes_back_until_its_last_delivery_then_is_dead_lettered(worker):
    # GIVEN a group that cannot finish before the deadline (a transient failure)
    module, s3, sqs, dlq, origin = worker
    event = sqs_event([_message(origin, "late", [2000])])
    # WHEN it is delivered for the 2nd time of 3 with too little time left
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
    event["Records"].append(sqs_event([_message(origin, "ok", [2001])])["Records"][0] | {"messageId": "m-ok"})
    context = FakeLambdaContext(remaining_ms=8_000)  # past the 15 s reserve; one dead-letter attempt (7 s) fits
    # (everything fails when no time is left, and Powertools raises when every record failed)
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    with pytest.raises(BatchProcessingError):
        module.handler(event, context)
    assert _dead(sqs, dlq) == []
    # WHEN it is delivered for the 3rd (last) time and still cannot finish
    event["Records"] = event["Records"][:1]
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"
    response = module.handler(event, context)
    # THEN it is dead-lettered with "retries exhausted" instead of vanishing into the DLQ without a reason
    assert response == {"batchItemFailures": []}
    (dead,) = _dead(sqs, dlq)
    assert dead["MessageAttributes"]["fanfetch-error-type"]["StringValue"] == "retries exhausted"

"""The worker handler in its last seconds (moto, injected clock): no bookkeeping call starts whose worst case
does not fit the time left; the record comes back instead, and a failure reaches the DLQ only once its verdict
is counted."""

from __future__ import annotations

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.bootstrap.worker import build_worker_app
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.conftest import FakeLambdaContext, sqs_event
from tests.fakes import FakeClock


@pytest.fixture
def worker_env() -> dict[str, str]:
    # no reserve: the downloads may use all the time, so only the bookkeeping check decides
    return {"LEDGER_TABLE": "ledger", "FANFETCH_DEADLINE_RESERVE_S": "0", "FANFETCH_MAX_RECEIVE_COUNT": "3"}


@pytest.fixture
def app(worker):
    module, s3, sqs, dlq, origin = worker
    create_ledger_table(boto3.client("dynamodb"), "ledger")
    module._app = build_worker_app(clock=FakeClock())  # the clock stands still: time left is what the test says
    yield module, s3, sqs, dlq, origin, DynamoDBLedger(boto3.client("dynamodb"), "ledger")
    module._app = None


def _message(origin, group_id: str, year: int) -> str:
    url = origin.url_template.format(station_id=1000, year=year)
    return encode_message("job7", Group(group_id=group_id, sources=(Source(url),), key=f"{group_id}.csv",
                                        merge=MergeMode.CSV))


def _dead(sqs, dlq):
    return sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])


def test_a_verdict_is_not_recorded_without_time_for_the_ledger_call_and_is_counted_on_redelivery(app):
    module, s3, sqs, dlq, origin, ledger = app
    ledger.open_job("job7", total_groups=2, total_files=2, results_location="", now=0.0)
    event = sqs_event([_message(origin, "a", 2000), _message(origin, "b", 2001)])
    # GIVEN an invocation with 8 s left: the downloads fit, a ledger transaction (13 s at worst with the pause
    # after it) does not
    # WHEN the batch is handled / THEN both groups are stored but no ledger call is started: both come back
    with pytest.raises(BatchProcessingError):
        module.handler(event, FakeLambdaContext(remaining_ms=8_000))
    assert {o["Key"] for o in s3.list_objects_v2(Bucket="out")["Contents"]} == {"a.csv", "b.csv"}
    job = ledger.get_job("job7")
    assert (job.done, job.finished_at) == (0, None)
    # WHEN they come back with time enough / THEN each is counted once and the job finishes and is announced
    assert module.handler(event, FakeLambdaContext(remaining_ms=60_000)) == {"batchItemFailures": []}
    job = ledger.get_job("job7")
    assert (job.ok, job.failed) == (2, 0) and job.announced_at is not None
    assert origin.requests_for_year(2000) == 1  # the stored output was only counted, not fetched again


def test_a_failure_with_seconds_left_goes_to_the_dlq_only_once_its_verdict_is_counted(app):
    module, s3, sqs, dlq, origin, ledger = app
    ledger.open_job("job7", total_groups=1, total_files=1, results_location="", now=0.0)
    event = sqs_event([_message(origin, "ghost", 1800)])  # a 404: dead-lettered on first sight
    # GIVEN 2.5 s left: one dead-letter attempt (2 s connect + 5 s read) does not fit
    # WHEN handled / THEN no failure record, no DLQ send: the record comes back (SQS's redrive is the safety net)
    with pytest.raises(BatchProcessingError):
        module.handler(event, FakeLambdaContext(remaining_ms=2_500))
    assert _dead(sqs, dlq) == [] and "Contents" not in s3.list_objects_v2(Bucket="out", Prefix="_jobs/")
    # GIVEN 8 s left: the failure record's one attempt (7 s) fits, a retrying ledger call (13 s) does not
    # WHEN handled / THEN the failure record is written, but the verdict is not counted, so nothing is sent to the
    # DLQ (it would be sent again when the record comes back to be counted): the record comes back
    with pytest.raises(BatchProcessingError):
        module.handler(event, FakeLambdaContext(remaining_ms=8_000))
    assert s3.get_object(Bucket="out", Key="_jobs/job7/failed/ghost.json")
    assert _dead(sqs, dlq) == [] and ledger.get_job("job7").done == 0
    # WHEN it comes back with time enough / THEN counted once, and in the DLQ once, with its reason
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
    assert module.handler(event, FakeLambdaContext(remaining_ms=60_000)) == {"batchItemFailures": []}
    (dead,) = _dead(sqs, dlq)
    assert "404" in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    job = ledger.get_job("job7")
    assert (job.done, job.failed) == (1, 1)

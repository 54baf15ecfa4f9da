"""Poison, completed: undecodable text, lone surrogates, malformed checks and records without a
messageId are dead-lettered with a reason on first sight; the rest of the batch goes on."""

from __future__ import annotations

import json

import pytest

from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.conftest import FakeLambdaContext, sqs_event


def _good(origin) -> str:
    urls = (Source(origin.url_template.format(station_id=1000, year=2000)),)
    return encode_message("job7", Group(group_id="good", sources=urls, key="good.csv", merge=MergeMode.CSV))


def _dead(sqs, dlq):
    return sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])


def _poison(origin, **change) -> str:
    return json.dumps(json.loads(_good(origin)) | {"group": "bad"} | change)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda o: _poison(o, checks=[{"sha256": "not-hex"}]), "sha256 must be 64 hex digits"),
        (lambda o: _poison(o, checks=[{"size": "999"}]), "size must be a non-negative integer"),
        (lambda o: _poison(o, key="st\ud800.csv"), "surrogate"),
        (lambda o: _poison(o, group="g\udfff"), "surrogate"),
    ],
    ids=["sha256-not-hex", "size-as-text", "surrogate-key", "surrogate-group"],
)
def test_a_poison_message_is_dead_lettered_on_first_sight_and_the_good_one_is_stored(worker, make, reason):
    # GIVEN a batch with one poison message beside a good one
    module, s3, sqs, dlq, origin = worker
    bad = make(origin)
    # WHEN the worker handles it once
    response = module.handler(sqs_event([bad, _good(origin)]), FakeLambdaContext())
    # THEN nothing comes back, the good group is stored, and the poison sits in the DLQ with its reason
    assert response == {"batchItemFailures": []}
    assert s3.get_object(Bucket="out", Key="good.csv")["Body"].read()
    (dead,) = _dead(sqs, dlq)
    assert reason in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    record = json.loads(s3.get_object(Bucket="out", Key="_jobs/_poison/msg-0.json")["Body"].read())
    assert reason in record["error"]


def test_a_message_with_a_raw_lone_surrogate_is_dead_lettered_escaped(worker):
    # GIVEN a body (as a Python str) holding an unpaired surrogate, which SQS cannot carry as it is
    module, s3, sqs, dlq, origin = worker
    response = module.handler(sqs_event(['{"v": 1, "job": "j\ud800"}', _good(origin)]), FakeLambdaContext())
    # THEN it is dead-lettered (escaped, so SQS accepts it) and the batch goes on
    assert response == {"batchItemFailures": []}
    (dead,) = _dead(sqs, dlq)
    assert "\\ud800" in dead["Body"] and "surrogate" in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]


def test_a_record_without_message_id_never_takes_the_batch_down(worker):
    # GIVEN a batch in which one record has no messageId
    module, s3, sqs, dlq, origin = worker
    event = sqs_event([_good(origin), _good(origin).replace('"good', '"other')])
    del event["Records"][1]["messageId"]
    # WHEN handled
    response = module.handler(event, FakeLambdaContext())
    # THEN the good record is stored and acknowledged, the nameless one dead-lettered with the reason
    assert response == {"batchItemFailures": []}
    assert s3.get_object(Bucket="out", Key="good.csv")["Body"].read()
    (dead,) = _dead(sqs, dlq)
    assert "no messageId" in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]

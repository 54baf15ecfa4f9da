"""The producer Lambda handler under moto: every manifest source, and bad input enqueues nothing."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from fanfetch.core.messages import decode_message
from fanfetch.errors import InputError, ManifestError
from tests.conftest import FakeLambdaContext, load_handler


@pytest.fixture
def producer(monkeypatch, aws_env):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="inbox")
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="work")["QueueUrl"]
        monkeypatch.setenv("QUEUE_URL", url)
        monkeypatch.setenv("BUCKET_NAME", "inbox")
        yield load_handler("producer"), s3, sqs, url


def _received(sqs, url):
    out = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        out += [decode_message(m["Body"]) for m in batch]
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    return out


def test_inline_groups_become_one_message_each(producer):
    module, _, sqs, url = producer
    event = {"groups": [{"group": f"g{i}", "urls": [f"https://data.example/{i}/{y}.csv" for y in range(3)]}
                        for i in range(25)], "merge": "csv"}
    response = module.handler(event, FakeLambdaContext())
    messages = _received(sqs, url)
    assert response == {"job_id": messages[0].job_id, "groups": 25, "messages": 25}
    assert sorted(m.group.group_id for m in messages) == sorted(f"g{i}" for i in range(25))
    assert all(m.group.key == f"{m.group.group_id}.csv" for m in messages)


def test_a_job_spec_in_s3_expands_with_its_table_beside_it(producer):
    # GIVEN a spec and its stations table uploaded under jobs/
    module, s3, sqs, url = producer
    s3.put_object(Bucket="inbox", Key="jobs/stations.csv",
                  Body=b"station_id,first_year,last_year\n1,2000,2002\n2,2010,2010\n")
    s3.put_object(Bucket="inbox", Key="jobs/job.toml", Body=(
        b'[job]\nurl = "https://data.example/bulk?stationID={station_id}&Year={year}"\n'
        b'group = "{station_id}"\nkey = "stations/{station_id}.csv"\nmerge = "csv"\n'
        b'[table]\npath = "stations.csv"\n[expand]\nyear = {from = "first_year", to = "last_year"}\n'))
    # WHEN the producer is invoked with the spec's S3 URI
    response = module.handler({"manifest": "s3://inbox/jobs/job.toml"}, FakeLambdaContext())
    # THEN one message per station, URLs in year order
    messages = {m.group.group_id: m.group for m in _received(sqs, url)}
    assert response["groups"] == 2 and response["messages"] == 2
    assert messages["1"].urls == tuple(f"https://data.example/bulk?stationID=1&Year={y}" for y in (2000, 2001, 2002))
    assert messages["2"].key == "stations/2.csv"


def test_a_manifest_key_without_scheme_is_read_from_the_bucket(producer):
    module, s3, sqs, url = producer
    lines = [json.dumps({"group": str(i), "urls": [f"https://d.example/{i}"]}) for i in range(12)]
    s3.put_object(Bucket="inbox", Key="m.jsonl", Body="\n".join(lines).encode())
    assert module.handler({"manifest": "m.jsonl"}, FakeLambdaContext())["messages"] == 12
    assert len(_received(sqs, url)) == 12


def test_a_bad_manifest_is_rejected_whole_naming_the_line_and_nothing_is_enqueued(producer):
    module, s3, sqs, url = producer
    body = b'{"group": "a", "urls": ["https://d.example/1"]}\n{"group": "b", "urls": ["ftp://d.example/2"]}\n'
    s3.put_object(Bucket="inbox", Key="bad.jsonl", Body=body)
    with pytest.raises(ManifestError) as caught:
        module.handler({"manifest": "s3://inbox/bad.jsonl"}, FakeLambdaContext())
    assert str(caught.value).startswith("s3://inbox/bad.jsonl:2:")
    assert _received(sqs, url) == []


@pytest.mark.parametrize("event", [{}, {"manifest": "s3://inbox/x", "groups": []}, {"manifest": "x", "extra": 1},
                                   {"groups": "nope"}, {"groups": [], "merge": "zip"}])
def test_malformed_events_name_the_problem(producer, event):
    module, *_ = producer
    with pytest.raises(InputError):
        module.handler(event, FakeLambdaContext())


def test_a_missing_queue_url_is_named(producer, monkeypatch):
    module, *_ = producer
    monkeypatch.delenv("QUEUE_URL")
    with pytest.raises(InputError, match="QUEUE_URL is not set"):
        module.handler({"groups": [{"group": "a", "urls": ["https://d.example/1"]}]}, FakeLambdaContext())


def test_a_refresh_event_starts_a_new_run_whose_messages_ask_for_a_recheck(producer):
    module, _, sqs, url = producer
    event = {"groups": [{"group": "a", "urls": ["https://d.example/1"]}]}
    plain = module.handler(event, FakeLambdaContext())
    _received(sqs, url)
    refreshed = module.handler(dict(event, refresh=True), FakeLambdaContext())
    (message,) = _received(sqs, url)
    assert refreshed["job_id"].startswith(plain["job_id"] + "-") and refreshed["job_id"] != plain["job_id"]
    assert message.refresh and message.job_id == refreshed["job_id"]


SCHEDULED = {"groups": [{"group": f"g{i}", "urls": [f"https://d.example/{i}"]} for i in range(3)], "refresh": True,
             "scheduled_at": "2026-12-03T08:00:00Z"}


def test_one_schedule_event_delivered_twice_is_one_job(producer, monkeypatch):
    # GIVEN a ledger, and the schedule's event for the 08:00 run (as the rule's input transformer sends it)
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
    from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table

    module, _, sqs, url = producer
    create_ledger_table(boto3.client("dynamodb"), "ledger")
    monkeypatch.setenv("LEDGER_TABLE", "ledger")
    # WHEN it is delivered, and delivered again (Lambda's async retry, or an EventBridge duplicate)
    first = module.handler(json.loads(json.dumps(SCHEDULED)), FakeLambdaContext())
    again = module.handler(json.loads(json.dumps(SCHEDULED)), FakeLambdaContext())
    # THEN both runs are one job, named by the event's time (not the clock's), opened once in the ledger
    assert first["job_id"] == again["job_id"] and first["job_id"].endswith("-20261203T080000Z")
    messages = _received(sqs, url)
    assert {m.job_id for m in messages} == {first["job_id"]} and all(m.refresh for m in messages)
    job = DynamoDBLedger(boto3.client("dynamodb"), "ledger").get_job(first["job_id"])
    assert job is not None and job.total_groups == 3 and job.done == 0


def test_the_next_schedule_event_is_a_new_job(producer):
    module, *_ = producer
    today = module.handler(json.loads(json.dumps(SCHEDULED)), FakeLambdaContext())
    tomorrow = module.handler(dict(SCHEDULED, scheduled_at="2026-12-04T08:00:00Z"), FakeLambdaContext())
    assert tomorrow["job_id"] != today["job_id"] and tomorrow["job_id"].endswith("-20261204T080000Z")


@pytest.mark.parametrize("bad", ["yesterday", "2026-12-03T08:00:00", 1733212800])
def test_a_scheduled_at_that_is_not_a_utc_time_is_refused_naming_the_field(producer, bad):
    module, _, sqs, url = producer
    with pytest.raises(InputError, match="scheduled_at"):
        module.handler(dict(SCHEDULED, scheduled_at=bad), FakeLambdaContext())
    assert _received(sqs, url) == []


def test_a_key_that_only_the_output_prefix_pushes_past_s3s_limit_is_refused_before_anything_is_sent(
        producer, monkeypatch):
    # GIVEN the stack's OUTPUT_PREFIX (which the worker prepends to every key) and a key that fits alone
    module, _, sqs, url = producer
    monkeypatch.setenv("OUTPUT_PREFIX", "runs/" + "p" * 60)
    event = {"groups": [{"group": "a", "urls": ["https://d.example/1"]},
                        {"group": "b", "urls": ["https://d.example/2"], "key": "/".join(["k" * 200] * 5)}]}
    # WHEN the producer runs / THEN it names the group's line and field; the queue stays empty
    with pytest.raises(ManifestError, match=r"^event.groups:2: key: output key .* with the output prefix"):
        module.handler(event, FakeLambdaContext())
    assert _received(sqs, url) == []

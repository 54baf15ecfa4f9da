"""End to end with the job ledger: every message delivered twice, counts stay exact, exactly one
"Job Finished" event, and the results manifest lands in the bucket (moto server, real HTTP)."""

from __future__ import annotations

import json

import boto3
import pytest

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.cli.demo import expected_station_csv
from fanfetch.cli.demo_origin import station_year_csv
from tests.conftest import FakeLambdaContext, load_handler
from tests.e2e.esm import pump

pytestmark = pytest.mark.slow




def test_duplicate_delivery_counts_once_and_the_job_finishes_exactly_once(moto_server, demo_origin, monkeypatch):
    # GIVEN the stack's resources: bucket, queue, ledger table, and a rule catching "Job Finished" into a queue
    s3, sqs, events = boto3.client("s3"), boto3.client("sqs"), boto3.client("events")
    s3.create_bucket(Bucket="fanfetch-out")
    queue = sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    finished = sqs.create_queue(QueueName="finished")["QueueUrl"]
    finished_arn = sqs.get_queue_attributes(QueueUrl=finished, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="job-finished", EventPattern=json.dumps({"source": ["fanfetch"],
                                                                  "detail-type": ["Job Finished"]}))
    events.put_targets(Rule="job-finished", Targets=[{"Id": "q", "Arn": finished_arn}])
    create_ledger_table(boto3.client("dynamodb"), "ledger")
    for name, value in {"QUEUE_URL": queue, "BUCKET_NAME": "fanfetch-out", "LEDGER_TABLE": "ledger",
                        "FANFETCH_ALLOW_HOSTS": demo_origin.host_port, "OUTPUT_PREFIX": "out"}.items():
        monkeypatch.setenv(name, value)
    template = demo_origin.url_template
    ghost = {"group": "ghost", "urls": [template.format(station_id=1000, year=1800)]}
    groups = [{"group": str(s.station_id), "key": f"stations/{s.station_id}.csv",
               "urls": [template.format(station_id=s.station_id, year=y) for y in range(s.first_year, s.last_year + 1)]}
              for s in demo_origin.stations] + [ghost]
    event = {"groups": groups, "merge": "csv"}
    producer = load_handler("producer")
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    monkeypatch.setenv("DLQ_URL", dlq)

    # WHEN the producer runs twice (every message is enqueued, and so delivered, twice) and the workers drain it
    first = producer.handler(event, FakeLambdaContext())
    second = producer.handler(event, FakeLambdaContext())
    pump(sqs, queue, load_handler("worker").handler, FakeLambdaContext)

    # THEN the ledger counts each group once: 5 ok, 1 failed, of 6, and the job is finished
    assert first["job_id"] == second["job_id"] and first["messages"] == 6
    job = DynamoDBLedger(boto3.client("dynamodb"), "ledger").get_job(first["job_id"])
    assert (job.total_groups, job.ok, job.failed, job.finished) == (6, 5, 1, True)
    assert job.files == job.total_files == sum(len(g["urls"]) for g in groups)  # every file accounted for, once
    # AND exactly one "Job Finished" event was published, pointing at the results manifest
    received = sqs.receive_message(QueueUrl=finished, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert len(received) == 1
    detail = json.loads(received[0]["Body"])["detail"]
    assert detail["job_id"] == first["job_id"] and detail["ok"] == 5 and detail["failed"] == 1
    # AND the results manifest lists every group once, successes and the failure with its reason
    key = f"out/_jobs/{first['job_id']}/results.jsonl"
    lines = [json.loads(line) for line in s3.get_object(Bucket="fanfetch-out", Key=key)["Body"].read().splitlines()]
    assert sorted(line["group"] for line in lines) == sorted(g["group"] for g in groups)
    (failed,) = [line for line in lines if line["status"] == "failed"]
    assert failed["group"] == "ghost" and "404" in failed["error"]


def test_a_scheduled_refresh_rewrites_only_the_changed_station_and_counts_it(moto_server, demo_origin, monkeypatch):
    # GIVEN a deployed-like setup and a first run of every station
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="fanfetch-out")
    queue = sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    create_ledger_table(boto3.client("dynamodb"), "ledger")
    for name, value in {"QUEUE_URL": queue, "BUCKET_NAME": "fanfetch-out", "LEDGER_TABLE": "ledger",
                        "FANFETCH_ALLOW_HOSTS": demo_origin.host_port}.items():
        monkeypatch.setenv(name, value)
    template = demo_origin.url_template
    event = {"merge": "csv", "groups": [
        {"group": str(s.station_id), "key": f"stations/{s.station_id}.csv",
         "urls": [template.format(station_id=s.station_id, year=y) for y in range(s.first_year, s.last_year + 1)]}
        for s in demo_origin.stations]}
    producer, worker = load_handler("producer"), load_handler("worker")
    producer.handler(event, FakeLambdaContext())
    pump(sqs, queue, worker.handler, FakeLambdaContext)
    first_bytes = demo_origin.bytes_sent
    etags = {s.station_id: s3.head_object(Bucket="fanfetch-out", Key=f"stations/{s.station_id}.csv")["ETag"]
             for s in demo_origin.stations}
    # WHEN the origin revises one station-year and the schedule's refresh event runs the job again
    changed = demo_origin.stations[2]
    demo_origin.revise(changed.station_id, changed.first_year)
    second = producer.handler(dict(event, refresh=True), FakeLambdaContext())
    pump(sqs, queue, worker.handler, FakeLambdaContext)
    # THEN only that station's object was replaced, with the revised data
    for station in demo_origin.stations:
        etag = s3.head_object(Bucket="fanfetch-out", Key=f"stations/{station.station_id}.csv")["ETag"]
        assert (etag != etags[station.station_id]) == (station is changed)
    body = s3.get_object(Bucket="fanfetch-out", Key=f"stations/{changed.station_id}.csv")["Body"].read()
    assert body == expected_station_csv(changed, demo_origin.versions)
    # AND the other stations cost only 304s: the bytes moved are the changed station's years, once each
    years = range(changed.first_year, changed.last_year + 1)
    assert demo_origin.bytes_sent - first_bytes == sum(
        len(station_year_csv(changed.station_id, y, demo_origin.versions.get((changed.station_id, y), 0)))
        for y in years)
    # AND the ledger reports 1 changed, the rest unchanged
    job = DynamoDBLedger(boto3.client("dynamodb"), "ledger").get_job(second["job_id"])
    assert (job.ok, job.failed, job.changed, job.unchanged, job.finished) == (5, 0, 1, 4, True)

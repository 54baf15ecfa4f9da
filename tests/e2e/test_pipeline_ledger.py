"""End to end with the job ledger: every message delivered twice, counts stay exact, exactly one
"Job Finished" event, and the results manifest lands in the bucket (moto server, real HTTP)."""

from __future__ import annotations

import json

import boto3
import pytest

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger, create_ledger_table
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

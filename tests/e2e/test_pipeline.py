"""End to end over real HTTP: manifest in S3 → producer → SQS → (event source mapping) → worker → S3.

moto's threaded server stands in for S3 and SQS on 127.0.0.1; the origin is the demo origin.
"""

from __future__ import annotations

import json

import boto3
import pytest

from fanfetch.cli.demo import expected_station_csv
from fanfetch.core.messages import decode_message
from tests.conftest import FakeLambdaContext, load_handler
from tests.e2e.esm import pump

pytestmark = pytest.mark.slow




def test_every_group_lands_merged_and_a_permanently_failing_one_ends_in_the_dlq(moto_server, demo_origin,
                                                                                  monkeypatch):
    # GIVEN a bucket, a queue whose redrive sends a message to the DLQ after 2 receives, and a manifest of the
    # origin's 5 stations plus one group whose file does not exist (404)
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="fanfetch-out")
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="work", Attributes={
        "VisibilityTimeout": "1",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    template = demo_origin.url_template
    lines = [{"group": str(s.station_id), "key": f"stations/{s.station_id}.csv", "merge": "csv",
              "urls": [template.format(station_id=s.station_id, year=y) for y in range(s.first_year, s.last_year + 1)]}
             for s in demo_origin.stations]
    lines.append({"group": "ghost", "key": "stations/ghost.csv", "merge": "csv",
                  "urls": [template.format(station_id=1000, year=1800)]})
    s3.put_object(Bucket="fanfetch-out", Key="manifests/stations.jsonl",
                  Body="\n".join(json.dumps(line) for line in lines).encode())
    monkeypatch.setenv("QUEUE_URL", queue)
    monkeypatch.setenv("BUCKET_NAME", "fanfetch-out")
    monkeypatch.setenv("OUTPUT_PREFIX", "out")
    monkeypatch.setenv("FANFETCH_ALLOW_HOSTS", demo_origin.host_port)
    monkeypatch.setenv("DLQ_URL", dlq)
    monkeypatch.setenv("FANFETCH_MAX_RECEIVE_COUNT", "2")
    monkeypatch.setenv("FANFETCH_DEADLINE_RESERVE_S", "15")
    # the first invocation runs out of time (5 s left, 15 s reserve): its whole batch must come back
    contexts = iter([FakeLambdaContext(remaining_ms=5_000)])

    # WHEN the producer is invoked and the event source mapping drives the worker until the queue is empty
    produced = load_handler("producer").handler({"manifest": "s3://fanfetch-out/manifests/stations.jsonl"},
                                                FakeLambdaContext())
    stats = pump(sqs, queue, load_handler("worker").handler, lambda: next(contexts, FakeLambdaContext()))

    # THEN every station is stored merged and byte-exact ...
    assert produced["groups"] == produced["messages"] == 6
    for station in demo_origin.stations:
        body = s3.get_object(Bucket="fanfetch-out", Key=f"out/stations/{station.station_id}.csv")["Body"].read()
        assert body == expected_station_csv(station)
    # ... the batch that ran out of time came back whole and was done on redelivery ...
    assert stats["returned"] >= 1 and stats["invocations"] >= 2
    # ... and the 404 group was never stored, never retried, and sits in the DLQ, intact, with its reason
    assert "Contents" not in s3.list_objects_v2(Bucket="fanfetch-out", Prefix="out/stations/ghost")
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                               MessageAttributeNames=["All"]).get("Messages", [])
    assert [decode_message(m["Body"]).group.group_id for m in dead] == ["ghost"]
    assert "404" in dead[0]["MessageAttributes"]["fanfetch-error"]["StringValue"]
    assert demo_origin.requests_for_year(1800) == 1
    record = json.loads(s3.get_object(Bucket="fanfetch-out", Key=f"out/_jobs/{produced['job_id']}/failed/ghost.json")
                        ["Body"].read())
    assert record["status"] == "failed" and "404" in record["error"]


def test_a_worker_that_keeps_crashing_still_loses_nothing_the_redrive_policy_moves_it_to_the_dlq(moto_server):
    # GIVEN a queue with maxReceiveCount 2 and a worker that dies on every invocation
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="crash-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="crash", Attributes={
        "VisibilityTimeout": "1",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="payload")

    def crashing_worker(event, context):
        raise MemoryError("worker died")

    # WHEN the event source mapping keeps delivering
    stats = pump(sqs, queue, crashing_worker, FakeLambdaContext, timeout_s=30)
    # THEN after two deliveries the message is in the DLQ, unchanged
    dead = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in dead] == ["payload"] and stats["invocations"] == 2

"""The producer's pre-flight under moto: a job whose hosts the workers would refuse, whose output bucket does
not take writes, or whose ledger table is missing is refused whole, naming each problem; nothing is enqueued."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.app.preflight import PreflightFailed
from tests.conftest import FakeLambdaContext, load_handler

EVENT = {"groups": [{"group": "a", "urls": ["http://127.0.0.1:8080/a.csv"]},
                    {"group": "b", "urls": ["http://10.1.2.3/b.csv", "https://data.example/b.csv"]}]}


@pytest.fixture
def producer(monkeypatch, aws_env):
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="out")
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="work")["QueueUrl"]
        create_ledger_table(boto3.client("dynamodb"), "ledger")
        monkeypatch.setenv("QUEUE_URL", url)
        monkeypatch.setenv("BUCKET_NAME", "out")
        monkeypatch.setenv("OUTPUT_PREFIX", "climate")
        monkeypatch.setenv("LEDGER_TABLE", "ledger")
        monkeypatch.delenv("FANFETCH_ALLOW_HOSTS", raising=False)
        yield load_handler("producer"), sqs, url


def _queued(sqs, url) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def test_hosts_the_workers_would_refuse_are_named_with_the_context_that_allows_them(producer):
    module, sqs, url = producer
    with pytest.raises(PreflightFailed) as caught:
        module.handler(EVENT, FakeLambdaContext())
    problems = caught.value.problems
    assert len(problems) == 2
    assert "host 127.0.0.1:8080" in problems[0] and "-c allowHosts=127.0.0.1:8080" in problems[0]
    assert "host 10.1.2.3:80" in problems[1] and "group 'b'" in problems[1]
    assert _queued(sqs, url) == 0
    assert boto3.client("dynamodb").scan(TableName="ledger")["Count"] == 0  # no job opened either


def test_allowed_hosts_pass_and_the_job_is_enqueued_after_a_write_under_the_output_prefix(producer, monkeypatch):
    module, sqs, url = producer
    monkeypatch.setenv("FANFETCH_ALLOW_HOSTS", "127.0.0.1:8080,10.1.2.3")
    response = module.handler(EVENT, FakeLambdaContext())
    assert response["messages"] == 2 and _queued(sqs, url) == 2
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="out")["Contents"]]
    assert keys == [f"climate/_jobs/{response['job_id']}/preflight.json"]


def test_a_missing_bucket_and_a_missing_ledger_table_are_both_named(producer, monkeypatch):
    module, sqs, url = producer
    monkeypatch.setenv("FANFETCH_ALLOW_HOSTS", "127.0.0.1:8080,10.1.2.3")
    monkeypatch.setenv("BUCKET_NAME", "no-such-bucket")
    monkeypatch.setenv("LEDGER_TABLE", "no-such-table")
    with pytest.raises(PreflightFailed) as caught:
        module.handler(EVENT, FakeLambdaContext())
    text = str(caught.value)
    assert "s3://no-such-bucket/climate/ does not accept writes" in text and "NoSuchBucket" in text
    assert "ledger table no-such-table does not open" in text
    assert _queued(sqs, url) == 0

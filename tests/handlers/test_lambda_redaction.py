"""Both Lambdas redact the same query parameters: FANFETCH_REDACT_PARAMS adds to the built-in secret names in
the producer's refusals as in the worker's dead-letter reasons (the stack hands both the same variable)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from fanfetch.core.redact import DEFAULT_SECRET_PARAMS, configure_secret_params
from fanfetch.errors import ManifestError
from tests.conftest import FakeLambdaContext, load_handler, sqs_event

URL = "ftp://h.example/data.csv?api_key=SECRETKEY"  # a scheme both refuse, naming the URL


@pytest.fixture(autouse=True)
def _built_in_names_only():
    configure_secret_params(())  # as a fresh container starts: only the built-in names
    yield
    configure_secret_params(())


@pytest.fixture
def lambdas(monkeypatch, aws_env):
    with mock_aws():
        sqs = boto3.client("sqs")
        boto3.client("s3").create_bucket(Bucket="out")
        monkeypatch.setenv("QUEUE_URL", sqs.create_queue(QueueName="work")["QueueUrl"])
        monkeypatch.setenv("DLQ_URL", dlq := sqs.create_queue(QueueName="dlq")["QueueUrl"])
        monkeypatch.setenv("BUCKET_NAME", "out")
        monkeypatch.setenv("FANFETCH_REDACT_PARAMS", "api_key")
        yield sqs, dlq


def test_the_producer_redacts_the_extra_parameters(lambdas):
    # GIVEN FANFETCH_REDACT_PARAMS=api_key and a group whose URL carries one
    assert "api_key" not in DEFAULT_SECRET_PARAMS
    # WHEN the producer refuses it
    with pytest.raises(ManifestError) as info:
        load_handler("producer").handler({"groups": [{"group": "g", "urls": [URL]}]}, FakeLambdaContext())
    # THEN its one line names the URL with the value redacted
    assert "api_key=REDACTED" in str(info.value) and "SECRETKEY" not in str(info.value)


def test_the_worker_redacts_the_extra_parameters(lambdas):
    # GIVEN the same variable and a message whose URL carries one
    sqs, dlq = lambdas
    body = json.dumps({"v": 1, "job": "job7", "group": "g", "key": "g.csv", "merge": "csv", "urls": [URL]})
    # WHEN the worker dead-letters it
    assert load_handler("worker").handler(sqs_event([body]), FakeLambdaContext()) == {"batchItemFailures": []}
    # THEN its reason names the URL with the value redacted
    (dead,) = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    reason = dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    assert "api_key=REDACTED" in reason and "SECRETKEY" not in reason

"""Secrets never leave the request in a Lambda run: a 404 group and a poison message whose URLs carry a
password and presigned secrets leave no secret in the DLQ attributes, the failure records, the
CloudWatch log lines (stdout) or the DynamoDB ledger."""

from __future__ import annotations

import json

import boto3
import pytest

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, OnMissing, Source
from tests.conftest import FakeLambdaContext, sqs_event

SECRETS = ("SECRETPW", "SECRETSIG", "SECRETTOK")


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"LEDGER_TABLE": "ledger"}


@pytest.fixture
def worker(worker):
    """The shared worker (tests/handlers/conftest.py) with its DynamoDB ledger."""
    create_ledger_table(boto3.client("dynamodb"), "ledger")
    return worker


def _url(origin, year: int) -> str:
    url = origin.url_template.format(station_id=1000, year=year) + "&X-Amz-Signature=SECRETSIG&token=SECRETTOK"
    return url.replace("http://", "http://bob:SECRETPW@")


def test_no_lambda_sink_holds_a_url_secret(worker, caplog):
    # GIVEN a job with a group failing on a 404, a group skipping a missing year, and a poison message
    module, s3, sqs, dlq, origin = worker
    ledger = DynamoDBLedger(boto3.client("dynamodb"), "ledger")
    ledger.open_job("job7", total_groups=2, total_files=4, results_location="", now=0.0)
    ghost = encode_message("job7", Group("ghost", (Source(_url(origin, 1800)),), "ghost.csv", MergeMode.CSV))
    gap = encode_message("job7", Group("gap", tuple(Source(_url(origin, y)) for y in (2000, 1801, 2001)), "gap.csv",
                                       MergeMode.CSV, on_missing=OnMissing.SKIP))
    poison = json.dumps({"v": 1, "job": "job7", "group": "p", "key": "p.csv", "merge": "csv",
                         "urls": ["ftp://eve:SECRETPW@h.example/x?token=SECRETTOK"]})
    # WHEN the worker handles them
    response = module.handler(sqs_event([ghost, gap, poison]), FakeLambdaContext())
    # (the CloudWatch lines: every record the worker logged, rendered by its own Powertools JSON formatter)
    logs = "\n".join(module.logger.registered_formatter.format(r) for r in caplog.records)
    # THEN all three are settled: gap stored, ghost and the poison dead-lettered with their reasons
    assert response == {"batchItemFailures": []}
    assert s3.get_object(Bucket="out", Key="gap.csv")
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    attributes = [m["MessageAttributes"]["fanfetch-error"]["StringValue"] for m in dead]
    assert len(attributes) == 2 and any("404" in a for a in attributes) and any("scheme" in a for a in attributes)
    # AND no secret is in a DLQ attribute, a failure record, a log line or a ledger item
    records = [s3.get_object(Bucket="out", Key=o["Key"])["Body"].read().decode()
               for o in s3.list_objects_v2(Bucket="out", Prefix="_jobs/")["Contents"]]
    assert any("failed/ghost.json" in o["Key"] for o in s3.list_objects_v2(Bucket="out", Prefix="_jobs/")["Contents"])
    items = json.dumps(boto3.client("dynamodb").scan(TableName="ledger")["Items"])
    assert "REDACTED" in items and "REDACTED" in logs  # the sinks did get the (redacted) URLs
    for secret in SECRETS:
        assert not [a for a in attributes if secret in a]
        assert not [r for r in records if secret in r]
        assert secret not in logs and secret not in items

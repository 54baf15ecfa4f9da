"""The worker handler under moto with an output bucket and a DLQ; modules add variables via ``worker_env``."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tests.conftest import load_handler


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Extra environment for the worker handler; override in a module."""
    return {}


@pytest.fixture
def worker(demo_origin, monkeypatch, aws_env, worker_env):
    with mock_aws():
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        s3.create_bucket(Bucket="out")
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        monkeypatch.setenv("BUCKET_NAME", "out")
        monkeypatch.setenv("DLQ_URL", dlq)
        monkeypatch.setenv("FANFETCH_ALLOW_HOSTS", demo_origin.host_port)
        for name, value in worker_env.items():
            monkeypatch.setenv(name, value)
        yield load_handler("worker"), s3, sqs, dlq, demo_origin

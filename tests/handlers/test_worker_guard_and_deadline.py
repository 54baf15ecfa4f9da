"""The worker Lambda against hostile or slow origins: the runtime API and metadata-style addresses
are never contacted, and a Retry-After longer than the time left hands the work back at once."""

from __future__ import annotations

import time

import boto3
import pytest
from moto import mock_aws

from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.conftest import FakeLambdaContext, load_handler, sqs_event
from tests.origin_faults import Canary, ok, retry_after


def _message(group_id: str, url: str) -> str:
    return encode_message("job", Group(group_id=group_id, sources=(Source(url),), key=f"{group_id}.bin",
                                       merge=MergeMode.CONCAT))


@pytest.fixture
def worker_env(monkeypatch, aws_env):
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="out")
        monkeypatch.setenv("BUCKET_NAME", "out")
        monkeypatch.setenv("FANFETCH_DEADLINE_RESERVE_S", "15")
        yield monkeypatch


def test_the_lambda_runtime_api_is_never_reached_even_with_another_loopback_port_allowed(worker_env, fault_origin):
    # GIVEN an allowed origin on one loopback port, and a canary standing in for the runtime API on 127.0.0.1:9001
    try:
        runtime_api = Canary("127.0.0.1", 9001)
    except OSError:
        pytest.skip("port 9001 is in use on this machine")
    try:
        good = fault_origin.add("/fine", ok(b"fine"))
        worker_env.setenv("FANFETCH_ALLOW_HOSTS", good.split("/")[2])
        module = load_handler("worker")
        urls = ["http://127.0.0.1:9001/2018-06-01/runtime/invocation/next", "http://localhost:9001/x",
                "http://2130706433:9001/x", "http://[::ffff:127.0.0.1]:9001/x", "http://0177.0.0.1:9001/x"]
        # WHEN messages point at the runtime API in several spellings, beside one good message
        event = sqs_event([_message(f"g{i}", u) for i, u in enumerate(urls)] + [_message("good", good)])
        response = module.handler(event, FakeLambdaContext())
        # THEN exactly the runtime-API records fail, and the runtime API saw no connection at all
        assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == [
            f"msg-{i}" for i in range(len(urls))]
        assert runtime_api.connections == 0
    finally:
        runtime_api.close()


def test_a_retry_after_longer_than_the_time_left_fails_the_group_at_once_instead_of_sleeping(worker_env,
                                                                                              fault_origin):
    # GIVEN an origin answering 429 with Retry-After: 3600, and a Lambda with 60 s left
    url = fault_origin.add("/busy", retry_after(3600, code=429, times=100))
    good = fault_origin.add("/fine", ok(b"fine"))
    worker_env.setenv("FANFETCH_ALLOW_HOSTS", url.split("/")[2])
    module = load_handler("worker")
    event = sqs_event([_message("busy", url), _message("fine", good)])
    # WHEN the worker handles the batch
    began = time.monotonic()
    response = module.handler(event, FakeLambdaContext(remaining_ms=60_000))
    # THEN the busy group is handed back (reported, to be retried later) after one request, well before the deadline
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert fault_origin.requests("/busy") == 1
    assert time.monotonic() - began < 10

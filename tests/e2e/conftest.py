"""Fixtures for end-to-end tests: moto's threaded server on 127.0.0.1, fresh for every test."""

from __future__ import annotations

import urllib.request

import pytest
from moto.server import ThreadedMotoServer


@pytest.fixture
def moto_server(monkeypatch, aws_env):
    """S3, SQS, DynamoDB, EventBridge, CloudFormation over real HTTP; ``AWS_ENDPOINT_URL`` points at it.

    moto's backends live in the process and are shared by every server in it, so each test starts
    from a reset: tests never see each other's queues or tables.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    yield endpoint
    server.stop()

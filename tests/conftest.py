"""Shared fixtures: fake AWS credentials for every test (nothing may reach real AWS)."""

from __future__ import annotations

import os

import pytest

# Set before any test module builds a client: moto intercepts, and a slip can never use real credentials.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
}.items():
    os.environ[_name] = _value
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "FANFETCH_ALLOW_HOSTS"):
    os.environ.pop(_name, None)


@pytest.fixture
def aws_env(monkeypatch):
    """Explicit marker that a test uses (moto-mocked) AWS; the credentials above are fake."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return "us-east-1"

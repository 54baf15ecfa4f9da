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
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for credentials
}.items():
    os.environ[_name] = _value
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "FANFETCH_ALLOW_HOSTS"):
    os.environ.pop(_name, None)


@pytest.fixture
def aws_env(monkeypatch):
    """Explicit marker that a test uses (moto-mocked) AWS; the credentials above are fake."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return "us-east-1"


# --- fanfetch pipeline fixtures (lead) ---------------------------------------------------------
import importlib.util  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def load_handler(name: str):
    """Import ``lambdas/<name>/handler.py`` fresh, under a unique module name (both files are handler.py)."""
    path = REPO / "lambdas" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"_fanfetch_{name}_handler", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeLambdaContext:
    """What the Lambda runtime passes as ``context``; remaining time is under the test's control."""

    remaining_ms: int = 300_000
    function_name: str = "fanfetch-worker"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:fanfetch-worker"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def sqs_event(bodies: list[str], *, queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:work") -> dict:
    """A Lambda SQS event as the event source mapping delivers it."""
    return {"Records": [
        {"messageId": f"msg-{i}", "receiptHandle": f"rh-{i}", "body": body,
         "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "x",
                        "ApproximateFirstReceiveTimestamp": "0"},
         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
         "awsRegion": "us-east-1"}
        for i, body in enumerate(bodies)]}


@pytest.fixture
def demo_origin():
    """The built-in sample origin on 127.0.0.1 with 5 stations, no latency, no flakiness."""
    from fanfetch.cli.demo_origin import DemoOrigin, Station

    stations = [Station(1000, 2000, 2002), Station(1007, 1990, 1990), Station(1014, 2010, 2014),
                Station(1021, 1999, 2001), Station(1028, 2020, 2021)]
    with DemoOrigin(stations) as origin:
        origin.stations = stations
        yield origin


# --- fault-injecting origin for the HTTP adapter tests (tests/origin_faults.py) ----------------
from tests.origin_faults import fault_origin  # noqa: E402, F401

# --- no DNS from tests (newcomer) ----------------------------------------------------------------
_REAL_GETADDRINFO = __import__("socket").getaddrinfo


def _loopback_only_getaddrinfo(host, *args, **kwargs):
    """IP literals and ``localhost`` resolve as usual; any other name fails as NXDOMAIN would, without a
    query: the machine's resolver is not on loopback, and tests talk to nothing else."""
    import ipaddress
    import socket

    name = host.decode() if isinstance(host, bytes) else host
    try:
        ipaddress.ip_address(str(name).strip("[]").split("%", 1)[0])
    except ValueError:
        if name not in (None, "localhost") and not str(name).endswith(".localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (tests resolve no names)") from None
    return _REAL_GETADDRINFO(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch):
    """Late-bound lookups (``socket.getaddrinfo`` at call time, as the pre-flight does) resolve no names."""
    monkeypatch.setattr("socket.getaddrinfo", _loopback_only_getaddrinfo)

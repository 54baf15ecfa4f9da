"""The worker handler under moto with an output bucket and a DLQ (modules add variables via ``worker_env``), or
wired to in-memory fakes (``faked_worker``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto import mock_aws

from fanfetch.app.services import GroupContext
from fanfetch.app.worker import JobBook
from fanfetch.bootstrap.worker import WorkerApp
from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.settings import Settings
from tests.conftest import load_handler
from tests.fakes import FakeClock


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


def numbered_group(i: int) -> Group:
    """Group ``g<i>``: one file, ``https://o.example/<i>``, stored as ``k/<i>.bin``."""
    return Group(group_id=f"g{i}", sources=(Source(f"https://o.example/{i}"),), key=f"k/{i}.bin",
                 merge=MergeMode.CONCAT)


@pytest.fixture
def faked_worker():
    """``faked_worker(fetcher, ledger=, events=, store=, clock=None, dead_letters=None)``: the worker handler module,
    its app wired to these fakes (no DLQ unless given, no deadline reserve) and a pool of 4 download threads."""
    with ThreadPoolExecutor(max_workers=4) as files:
        def wire(fetcher, *, ledger, events, store, clock=None, dead_letters=None):
            module = load_handler("worker")
            ctx = GroupContext(fetcher=fetcher, store=store, files=files, clock=clock or FakeClock())
            module._app = WorkerApp(settings=Settings(bucket_name="b", deadline_reserve_s=0), ctx=ctx,
                                    dead_letters=dead_letters, book=JobBook(ledger=ledger, events=events, store=store))
            return module

        yield wire

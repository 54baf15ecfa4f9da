"""The per-attempt time check of the worker's bookkeeping clients (botocore hook), against moto in-process,
on an injected clock: no attempt starts whose worst case (timeouts + the pause after it) outlasts the end."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from fanfetch.adapters.call_deadline import CallDeadline, attempt_need_s
from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.bootstrap.worker import bookkeeping_config, bookkeeping_need_s
from fanfetch.errors import DeadlineExceeded
from fanfetch.settings import Settings
from tests.fakes import FakeClock


@pytest.fixture
def sqs(aws_env):
    with mock_aws():
        client = boto3.client("sqs", config=bookkeeping_config())
        yield client, client.create_queue(QueueName="dlq")["QueueUrl"]


def _depth(client, url: str) -> int:
    return int(client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
               ["Attributes"]["ApproximateNumberOfMessages"])


def test_every_bookkeeping_attempt_fits_the_reserve_kept_after_the_downloads():
    # GIVEN the bookkeeping clients' default config (2 s connect, 5 s read, 3 attempts; our loops pause ≤ 2 s)
    config = bookkeeping_config()
    # THEN each attempt with the pause after it fits the default 15 s reserve; a single attempt needs 7 s
    needs = [attempt_need_s(config, n, 3, then_pause_s=2.0) for n in (1, 2, 3)]
    assert needs == [13.0, 14.0, 9.0] and max(needs) <= Settings().deadline_reserve_s
    assert bookkeeping_need_s(Settings()) == 14.0
    assert attempt_need_s(bookkeeping_config(max_attempts=1), 1, 1) == 7.0


def test_a_call_starts_when_its_attempt_fits_and_is_refused_unsent_when_it_does_not(sqs):
    client, url = sqs
    clock = FakeClock()
    deadline = CallDeadline(clock)
    deadline.guard(client)
    # GIVEN an invocation with 13 s left (attempt 1 of 3 may take 7 s and be followed by a 6 s pause)
    deadline.start(clock.monotonic() + 13.0)
    # WHEN a message is sent / THEN it goes
    client.send_message(QueueUrl=url, MessageBody="fits")
    # GIVEN 0.5 s later (12.5 s left)
    clock.advance(0.5)
    # WHEN another is sent / THEN it is refused before any request, naming the time left and the need
    with pytest.raises(DeadlineExceeded, match=r"SendMessage not started: 12.5 s left .* attempt 1 of 3 may take 13 s"):
        client.send_message(QueueUrl=url, MessageBody="late")
    deadline.start(None)  # (no invocation end: no check)
    assert _depth(client, url) == 1


class _Raw:
    """The raw body of a canned response (what botocore reads ``stream()`` from)."""

    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body


def test_a_retry_is_checked_again_so_retries_cannot_run_past_the_end(sqs, monkeypatch):
    client, url = sqs
    clock = FakeClock()
    monkeypatch.setattr("botocore.endpoint.time.sleep", clock.sleep)  # botocore's pauses on the fake clock
    attempts: list[str] = []

    def slow_500(request, **_):  # an attempt that takes its whole 7 s and fails with a 500
        attempts.append(request.headers["amz-sdk-request"].decode())
        clock.advance(7.0)
        return AWSResponse(request.url, 500, {}, _Raw(b""))

    deadline = CallDeadline(clock)
    deadline.guard(client)
    client.meta.events.register_first("before-send", slow_500)  # after the guard, before moto
    # GIVEN 16 s left: attempt 1 fits (needs 13 s)
    deadline.start(clock.monotonic() + 16.0)
    # WHEN the send fails after 7 s / THEN attempt 2 (needs 14 s, 9 s minus the pause left) is refused
    with pytest.raises(DeadlineExceeded, match="attempt 2 of 3"):
        client.send_message(QueueUrl=url, MessageBody="x")
    assert attempts == ["attempt=1; max=3"]
    assert clock.monotonic() <= 1000.0 + 16.0  # nothing ran past the end


def test_the_ledgers_own_conflict_loop_is_bounded_by_the_time_left_too(aws_env):
    with mock_aws():
        client = boto3.client("dynamodb", config=bookkeeping_config())
        create_ledger_table(client, "ledger")
        clock = FakeClock()
        deadline = CallDeadline(clock)
        deadline.guard(client, then_pause_s=2.0)
        ledger = DynamoDBLedger(client, "ledger", clock=clock)
        # GIVEN an invocation with 4 s left (no attempt of 3 fits: attempt 1 needs 13 s)
        deadline.start(clock.monotonic() + 4.0)
        # WHEN the ledger is asked for a job / THEN it is refused at once, not retried for 8 attempts
        with pytest.raises(DeadlineExceeded):
            ledger.open_job("j", total_groups=1, total_files=1, results_location="", now=0.0)
        assert clock.sleeps == []
        deadline.start(None)
        assert ledger.get_job("j") is None

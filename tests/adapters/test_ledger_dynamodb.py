"""The DynamoDB ledger beyond the shared contract: item layout, conflict retries, error translation, a crash
between counting and finishing, and the same calls over HTTP against moto's server."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from moto import mock_aws
from moto.server import ThreadedMotoServer

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.core.ledger import GroupRecord, Validator
from fanfetch.errors import PermanentLedgerError, RetryableLedgerError
from tests.fakes import FakeClock

TABLE = "fanfetch-ledger"


@pytest.fixture
def ddb(aws_env) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_ledger_table(client, TABLE)
        yield client


def _ok(job: str, group: str, *, key: str = "out/a.csv") -> GroupRecord:
    return GroupRecord(job_id=job, group_id=group, status="ok", key=key, files=1, bytes=10, sha256="ab" * 32,
                       finished_at=123.5, validators=(Validator("http://o/a", etag='"e1"'),))


class _FailingCalls:
    """Client proxy whose named operation raises the queued errors first, then reaches moto."""

    def __init__(self, client: Any, operation: str, errors: list[BaseException]):
        self._client, self._operation, self._errors = client, operation, errors
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name != self._operation:
            return attr

        def call(**kwargs: Any) -> Any:
            self.calls += 1
            if self._errors:
                raise self._errors.pop(0)
            return attr(**kwargs)

        return call


def _cancelled(*codes: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
         "CancellationReasons": [{"Code": c} for c in codes]},
        "TransactWriteItems",
    )


def test_items_follow_the_single_table_layout(ddb: Any) -> None:
    # GIVEN a job of 8 groups (2 counter shards at most) with one ok verdict
    ledger = DynamoDBLedger(ddb, TABLE, max_shards=2)
    ledger.open_job("j1", total_groups=8, total_files=8, results_location="s3://b/r", now=1.0,
                    group_ids=[f"g{i}" for i in range(8)])
    ledger.record_group(_ok("j1", "g1"))
    # THEN the table holds the job, its counter shards, the group and the output's validators
    items = {(i["pk"]["S"], i["sk"]["S"]): i for i in ddb.scan(TableName=TABLE)["Items"]}
    assert set(items) == {("JOB#j1", "JOB"), ("SHARDS#j1", "SHARD#0000"), ("SHARDS#j1", "SHARD#0001"),
                          ("JOB#j1", "GROUP#g1"), ("OUT#out/a.csv", "OUT")}
    assert items[("JOB#j1", "JOB")]["shards"] == {"N": "2"}
    assert "ok" not in items[("JOB#j1", "JOB")]  # no counter on the job item: nothing writes it per verdict
    shards = [items[("SHARDS#j1", f"SHARD#{k:04d}")] for k in (0, 1)]
    # each shard expects the verdicts of the groups hashed to it (crc32 % 2), and counts them
    assert sorted(int(s["expected"]["N"]) for s in shards) == sorted(
        [sum(zlib.crc32(f"g{i}".encode()) % 2 == k for i in range(8)) for k in (0, 1)])
    counted = [(s["done"]["N"], s["ok"]["N"], s["bytes"]["N"]) for s in shards]
    assert sorted(counted) == [("0", "0", "0"), ("1", "1", "10")]
    assert items[("OUT#out/a.csv", "OUT")]["sha256"] == {"S": "ab" * 32}


def test_transaction_conflicts_are_retried_with_backoff_and_count_once(ddb: Any) -> None:
    # GIVEN DynamoDB cancels the first two verdict transactions: another worker holds the job item
    clock = FakeClock()
    client = _FailingCalls(ddb, "transact_write_items",
                           [_cancelled("None", "TransactionConflict"), _cancelled("None", "TransactionConflict")])
    DynamoDBLedger(ddb, TABLE).open_job("j", total_groups=1, total_files=1, results_location="", now=1.0)
    ledger = DynamoDBLedger(client, TABLE, clock=clock, rand=lambda: 0.5)
    # WHEN a verdict is recorded
    outcome = ledger.record_group(_ok("j", "g"))
    # THEN the third attempt counts it (and finishes the job), after two jittered, growing waits
    assert outcome.counted and outcome.job_finished
    assert client.calls == 3
    assert clock.sleeps == [0.025, 0.05]
    assert ledger.get_job("j").ok == 1


def test_conflicts_that_never_clear_are_a_retryable_error(ddb: Any) -> None:
    clock = FakeClock()
    client = _FailingCalls(ddb, "transact_write_items", [_cancelled("None", "TransactionConflict")] * 3)
    DynamoDBLedger(ddb, TABLE).open_job("j", total_groups=1, total_files=1, results_location="", now=1.0)
    ledger = DynamoDBLedger(client, TABLE, clock=clock, max_attempts=3)
    with pytest.raises(RetryableLedgerError, match="TransactionConflict"):
        ledger.record_group(_ok("j", "g"))
    assert len(clock.sleeps) == 2
    assert ledger.get_job("j").done == 0


def test_a_finishing_update_that_meets_a_transaction_in_flight_is_retried(ddb: Any) -> None:
    # GIVEN the finishing update collides once with another worker's transaction on the job item
    conflict = ClientError({"Error": {"Code": "TransactionConflictException", "Message": "busy"}}, "UpdateItem")
    clock = FakeClock()
    client = _FailingCalls(ddb, "update_item", [conflict])
    ledger = DynamoDBLedger(client, TABLE, clock=clock)
    ledger.open_job("j", total_groups=1, total_files=1, results_location="", now=1.0)
    # WHEN the last verdict is recorded
    outcome = ledger.record_group(_ok("j", "g"))
    # THEN the update is tried again and this call finishes the job
    assert (outcome.counted, outcome.job_finished) == (True, True)
    assert client.calls == 2 and len(clock.sleeps) == 1


def test_a_crash_between_counting_and_finishing_is_healed_by_the_redelivery(ddb: Any) -> None:
    # GIVEN the last group's verdict was counted but the finishing update failed (the worker died)
    client = _FailingCalls(ddb, "update_item", [EndpointConnectionError(endpoint_url="http://127.0.0.1:1")])
    ledger = DynamoDBLedger(client, TABLE)
    ledger.open_job("j", total_groups=1, total_files=1, results_location="", now=1.0)
    with pytest.raises(RetryableLedgerError):
        ledger.record_group(_ok("j", "g"))
    assert ledger.get_job("j").finished_at is None
    # WHEN the message is redelivered
    outcome = ledger.record_group(_ok("j", "g"))
    # THEN it is not counted again, but it finishes the job (exactly once)
    assert (outcome.counted, outcome.job_finished) == (False, True)
    assert ledger.get_job("j").ok == 1
    assert ledger.record_group(_ok("j", "g")).job_finished is False


def _failed(job: str, group: str, *, key: str = "out/a.csv") -> GroupRecord:
    return GroupRecord(job_id=job, group_id=group, status="failed", key=key, attempts=5, error="HTTP 503",
                       finished_at=100.0)


def test_an_upgrade_replaces_the_group_item_and_the_outputs_validators(ddb: Any) -> None:
    # GIVEN a finished job whose only group failed
    ledger = DynamoDBLedger(ddb, TABLE)
    ledger.open_job("j1", total_groups=1, total_files=1, results_location="", now=1.0)
    assert ledger.record_group(_failed("j1", "g1")).job_finished
    # WHEN it is redriven and succeeds
    outcome = ledger.record_group(_ok("j1", "g1"))
    # THEN the group item holds the ok verdict, the output item exists, and the job's counters moved
    items = {(i["pk"]["S"], i["sk"]["S"]): i for i in ddb.scan(TableName=TABLE)["Items"]}
    assert items[("JOB#j1", "GROUP#g1")]["status"] == {"S": "ok"}
    assert "error" not in items[("JOB#j1", "GROUP#g1")]
    assert items[("OUT#out/a.csv", "OUT")]["sha256"] == {"S": "ab" * 32}
    assert items[("SHARDS#j1", "SHARD#0000")]["done"] == {"N": "1"}  # the group stays done once
    job = ledger.get_job("j1")
    assert (job.ok, job.failed, job.done, job.finished_at) == (1, 0, 1, 100.0)
    assert (outcome.upgraded, outcome.job_finished, outcome.job.ok) == (True, False, 1)


def test_a_cancellation_without_the_stored_item_reads_it_before_upgrading(ddb: Any) -> None:
    # GIVEN a failed group, and DynamoDB cancelling the next verdict without returning the stored item
    errors: list[BaseException] = []
    client = _FailingCalls(ddb, "transact_write_items", errors)
    ledger = DynamoDBLedger(client, TABLE)
    ledger.open_job("j", total_groups=2, total_files=2, results_location="", now=1.0)
    ledger.record_group(_failed("j", "g"))
    errors.append(_cancelled("ConditionalCheckFailed", "None"))
    # WHEN an ok arrives for it
    outcome = ledger.record_group(_ok("j", "g"))
    # THEN the ledger read the stored verdict itself and upgraded it
    assert (outcome.counted, outcome.upgraded) == (True, True)
    assert (ledger.get_job("j").ok, ledger.get_job("j").failed) == (1, 0)


def test_an_upgrade_after_a_crash_before_finishing_finishes_the_job(ddb: Any) -> None:
    # GIVEN the last group's failure was counted but the finishing update failed (the worker died)
    client = _FailingCalls(ddb, "update_item", [EndpointConnectionError(endpoint_url="http://127.0.0.1:1")])
    ledger = DynamoDBLedger(client, TABLE)
    ledger.open_job("j", total_groups=1, total_files=1, results_location="", now=1.0)
    with pytest.raises(RetryableLedgerError):
        ledger.record_group(_failed("j", "g"))
    # WHEN the group is redriven and succeeds
    outcome = ledger.record_group(_ok("j", "g"))
    # THEN that call upgrades it and, as nobody finished the job yet, finishes it (so it gets announced)
    assert (outcome.counted, outcome.upgraded, outcome.job_finished) == (True, True, True)
    assert (outcome.job.ok, outcome.job.failed, outcome.job.finished_at) == (1, 0, 123.5)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ProvisionedThroughputExceededException", RetryableLedgerError),
        ("ThrottlingException", RetryableLedgerError),
        ("InternalServerError", RetryableLedgerError),
        ("AccessDeniedException", PermanentLedgerError),
        ("ResourceNotFoundException", PermanentLedgerError),
        ("ValidationException", PermanentLedgerError),
    ],
)
def test_botocore_errors_become_ledger_errors_by_code(aws_env, code: str, expected: type) -> None:
    # GIVEN DynamoDB answers every call with ``code``
    client = boto3.client("dynamodb", region_name="us-east-1")
    ledger = DynamoDBLedger(client, TABLE)
    job_item = {"pk": {"S": "JOB#j"}, "sk": {"S": "JOB"}, "job_id": {"S": "j"}, "shards": {"N": "1"}}
    with Stubber(client) as stub:
        # THEN every port call raises our error of the right kind, never a botocore one, whichever call fails
        for failing in ("get_item", "transact_write_items", "put_item"):
            for operation in ("get_item", "transact_write_items", "put_item"):
                if operation == failing:
                    stub.add_client_error(operation, service_error_code=code, http_status_code=400)
                    break
                stub.add_response(operation, {} if operation != "transact_write_items" else {})
            with pytest.raises(expected, match=code):
                ledger.open_job("j", total_groups=1, total_files=1, results_location="", now=1.0)
        stub.add_response("get_item", {"Item": job_item})
        stub.add_client_error("transact_write_items", service_error_code=code, http_status_code=400)
        with pytest.raises(expected, match=code):
            ledger.record_group(_ok("j", "g"))
        stub.add_client_error("get_item", service_error_code=code, http_status_code=400)
        with pytest.raises(expected, match=code):
            ledger.get_job("j")
        stub.add_response("get_item", {"Item": job_item})
        stub.add_client_error("query", service_error_code=code, http_status_code=400)
        with pytest.raises(expected, match=code):
            ledger.get_job("j")
        stub.add_client_error("query", service_error_code=code, http_status_code=400)
        with pytest.raises(expected, match=code):
            ledger.list_groups("j")


def test_a_missing_table_is_permanent(ddb: Any) -> None:
    with pytest.raises(PermanentLedgerError, match="ResourceNotFoundException"):
        DynamoDBLedger(ddb, "no-such-table").get_job("j")


def test_transaction_cancelled_for_another_reason_is_permanent(ddb: Any) -> None:
    client = _FailingCalls(ddb, "transact_write_items", [_cancelled("None", "ValidationError")])
    DynamoDBLedger(ddb, TABLE).open_job("j", total_groups=1, total_files=1, results_location="", now=1.0)
    ledger = DynamoDBLedger(client, TABLE)
    with pytest.raises(PermanentLedgerError, match="ValidationError"):
        ledger.record_group(_ok("j", "g"))


@pytest.mark.slow
def test_the_ledger_works_over_http_against_moto_server(monkeypatch, aws_env) -> None:
    # GIVEN moto's server on loopback and a ledger table created through it
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=f"http://{host}:{port}")
        create_ledger_table(client, TABLE)
        ledger = DynamoDBLedger(client, TABLE)
        # WHEN a job of 3 groups is opened twice and every verdict delivered twice
        ledger.open_job("j", total_groups=3, total_files=3, results_location="s3://b/r", now=1.0)
        assert ledger.open_job("j", total_groups=9, total_files=9, results_location="x", now=2.0).total_groups == 3
        outcomes = [ledger.record_group(_ok("j", f"g{i}", key=f"k{i}")) for i in (0, 0, 1, 1, 2, 2)]
        # THEN the counts are exact and one call finished the job; reads agree
        assert [o.counted for o in outcomes] == [True, False] * 3
        assert [o.job_finished for o in outcomes] == [False] * 4 + [True, False]
        job = ledger.get_job("j")
        assert (job.ok, job.files, job.bytes, job.finished_at) == (3, 3, 30, 123.5)
        assert [g.group_id for g in ledger.list_groups("j", status="ok")] == ["g0", "g1", "g2"]
        assert ledger.last_validators("k1") == ("ab" * 32, (Validator("http://o/a", etag='"e1"'),))
    finally:
        server.stop()

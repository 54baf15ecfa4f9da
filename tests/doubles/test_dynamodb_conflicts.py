"""The DynamoDB conflict double answers as AWS documents: cancelled transactions, rejected plain writes,
items held for the transaction's time, moto serialised — checked through botocore over real HTTP."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from tests.doubles.dynamodb_conflicts import (
    ConflictingDynamoDB,
    DynamoDBConflictServer,
    MotoUpstream,
    fetch_stats,
    serve_dynamodb_conflicts,
)


class Gate:
    """An injected ``hold``: every hold blocks until released, and the test knows who is holding."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.released = threading.Event()
        self.durations: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.durations.append(seconds)
        self.entered.release()
        assert self.released.wait(30), "the test never released the hold"

    def wait_until_held(self) -> None:
        assert self.entered.acquire(timeout=30), "nothing entered its hold"


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def front(gate: Gate, aws_env: str) -> Iterator[DynamoDBConflictServer]:
    with serve_dynamodb_conflicts(hold=gate, write_hold_s=0.005) as server:
        yield server
    gate.released.set()


@pytest.fixture
def table(front: DynamoDBConflictServer) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    front.client().create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "x"}}


def _add(table: str, pk: str) -> dict[str, Any]:
    return {"Update": {"TableName": table, "Key": _key(pk), "UpdateExpression": "ADD n :one",
                       "ExpressionAttributeValues": {":one": {"N": "1"}}}}


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _count(client: Any, table: str, pk: str) -> int | None:
    item = client.get_item(TableName=table, Key=_key(pk), ConsistentRead=True).get("Item")
    return None if item is None else int(item["n"]["N"])


def test_a_transaction_touching_an_item_another_transaction_holds_is_cancelled_with_aws_reasons(front, gate, table):
    client = front.client()
    # GIVEN a transaction on items a and b, inside its hold
    both = [_add(table, "a"), _add(table, "b")]
    holder, outcome = _in_thread(lambda: client.transact_write_items(TransactItems=both))
    gate.wait_until_held()
    # WHEN another transaction touches c and b
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(TransactItems=[_add(table, "c"), _add(table, "b")])
    gate.released.set()
    holder.join(10)
    # THEN it is cancelled as AWS documents: one reason per action, in order, "None" where nothing conflicted
    error = caught.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in error["CancellationReasons"]] == ["None", "TransactionConflict"]
    assert "[None, TransactionConflict]" in error["Error"]["Message"]
    # AND the holder committed and held its items 25 ms; the cancelled one wrote nothing
    assert outcome == [outcome[0]] and not isinstance(outcome[0], Exception)
    assert gate.durations[0] == pytest.approx(0.025)
    assert (_count(client, table, "a"), _count(client, table, "b"), _count(client, table, "c")) == (1, 1, None)
    stats = front.stats()
    assert (stats.transactions, stats.transactions_cancelled) == (2, 1)


def test_a_plain_write_to_an_item_inside_a_transaction_gets_transaction_conflict_exception(front, gate, table):
    client = front.client()
    # GIVEN a transaction holding item a
    holder, _ = _in_thread(lambda: client.transact_write_items(TransactItems=[_add(table, "a")]))
    gate.wait_until_held()
    # WHEN a plain UpdateItem writes a; and a plain write to another item
    with pytest.raises(ClientError) as caught:
        client.update_item(TableName=table, Key=_key("a"), UpdateExpression="ADD n :one",
                           ExpressionAttributeValues={":one": {"N": "1"}})
    gate.released.set()  # (the other item's write holds 5 ms too: released already)
    client.update_item(TableName=table, Key=_key("z"), UpdateExpression="ADD n :one",
                       ExpressionAttributeValues={":one": {"N": "1"}})
    holder.join(10)
    # THEN the conflicting write is rejected with AWS's exception and wrote nothing; the other went through
    assert caught.value.response["Error"]["Code"] == "TransactionConflictException"
    assert caught.value.response["Error"]["Message"] == "Transaction is ongoing for the item"
    assert (_count(client, table, "a"), _count(client, table, "z")) == (1, 1)
    stats = front.stats()
    assert (stats.plain_writes, stats.plain_write_conflicts) == (2, 1)


def test_a_transaction_touching_an_item_a_plain_write_is_writing_is_cancelled(front, gate, table):
    client = front.client()
    # GIVEN a plain PutItem in the middle of writing item a
    writer, _ = _in_thread(lambda: client.put_item(TableName=table, Item={**_key("a"), "n": {"N": "7"}}))
    gate.wait_until_held()
    # WHEN a transaction touches a
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(TransactItems=[_add(table, "a")])
    gate.released.set()
    writer.join(10)
    # THEN it is cancelled with TransactionConflict and the plain write's value stands
    assert [r["Code"] for r in caught.value.response["CancellationReasons"]] == ["TransactionConflict"]
    assert _count(client, table, "a") == 7


def test_reads_are_never_refused_while_a_transaction_holds_the_item(front, gate, table):
    client = front.client()
    # GIVEN a transaction holding a (applied, inside its hold)
    holder, _ = _in_thread(lambda: client.transact_write_items(TransactItems=[_add(table, "a")]))
    gate.wait_until_held()
    # WHEN a strongly consistent read and a query ask for a; THEN they are answered, with the applied value
    assert _count(client, table, "a") == 1
    assert len(client.query(TableName=table, KeyConditionExpression="pk = :a", ConsistentRead=True,
                            ExpressionAttributeValues={":a": {"S": "a"}})["Items"]) == 1
    gate.released.set()
    holder.join(10)
    assert front.stats().conflicts == 0


def test_transactions_on_different_items_do_not_conflict_and_condition_failures_keep_their_reason(front, gate, table):
    gate.released.set()  # holds pass at once
    client = front.client()
    # WHEN transactions touch disjoint items, and one fails its condition
    client.transact_write_items(TransactItems=[_add(table, "a")])
    client.transact_write_items(TransactItems=[_add(table, "b")])
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(TransactItems=[
            _add(table, "c"),
            {"ConditionCheck": {"TableName": table, "Key": _key("a"),
                                "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    # THEN no conflict is reported; moto's own cancellation reason comes through
    assert [r["Code"] for r in caught.value.response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    stats = front.stats()
    assert (stats.transactions, stats.transactions_cancelled) == (3, 0)


def test_batch_write_hands_back_items_held_by_a_transaction_as_unprocessed(front, gate, table):
    client = front.client()
    # GIVEN a transaction holding item a
    holder, _ = _in_thread(lambda: client.transact_write_items(TransactItems=[_add(table, "a")]))
    gate.wait_until_held()
    # WHEN a batch writes a and b
    answer = client.batch_write_item(RequestItems={table: [
        {"PutRequest": {"Item": {**_key("a"), "n": {"N": "5"}}}},
        {"PutRequest": {"Item": {**_key("b"), "n": {"N": "5"}}}},
    ]})
    gate.released.set()
    holder.join(10)
    # THEN a comes back unprocessed (the transaction's value stands), b is written
    unprocessed = answer["UnprocessedItems"].get(table, [])
    assert [e["PutRequest"]["Item"]["pk"]["S"] for e in unprocessed] == ["a"]
    assert (_count(client, table, "a"), _count(client, table, "b")) == (1, 5)
    assert front.stats().plain_write_conflicts == 1


def test_many_threads_writing_one_item_lose_no_update_and_conflicts_are_counted(aws_env):
    # GIVEN the front with real (short) holds, 16 threads each adding 1 to one item 20 times, half by transaction
    with serve_dynamodb_conflicts(hold_s=0.002) as front:
        client = front.client()
        name = f"t-{uuid.uuid4().hex[:8]}"
        client.create_table(TableName=name, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                                  {"AttributeName": "sk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                       {"AttributeName": "sk", "KeyType": "RANGE"}],
                            BillingMode="PAY_PER_REQUEST")

        def writer(i: int) -> int:
            conflicts = 0
            done = 0
            while done < 20:
                try:
                    if i % 2:
                        client.transact_write_items(TransactItems=[_add(name, "hot")])
                    else:
                        client.update_item(TableName=name, Key=_key("hot"), UpdateExpression="ADD n :one",
                                           ExpressionAttributeValues={":one": {"N": "1"}})
                    done += 1
                except ClientError as exc:
                    assert exc.response["Error"]["Code"] in ("TransactionCanceledException",
                                                             "TransactionConflictException")
                    conflicts += 1
            return conflicts

        with ThreadPoolExecutor(16) as pool:
            seen = sum(pool.map(writer, range(16)))
        # THEN every one of the 320 increments landed exactly once (moto serialised), and every conflict the
        # writers saw is in the counters, the hot item first among the most written
        assert _count(client, name, "hot") == 320
        stats = fetch_stats(front.url)
        assert stats.conflicts == seen
        assert stats.transactions - stats.transactions_cancelled == 160
        assert stats.plain_writes - stats.plain_write_conflicts == 160
        assert stats.hottest_items[0][0].startswith(name + "|")


def test_the_front_forwards_to_a_moto_server_upstream(aws_env):
    # GIVEN a moto server and the front in front of it
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        core = ConflictingDynamoDB(MotoUpstream(f"http://{host}:{port}"), hold_s=0.0)
        with DynamoDBConflictServer(core) as front:
            client = front.client()
            name = f"t-{uuid.uuid4().hex[:8]}"
            client.create_table(TableName=name, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                                      {"AttributeName": "sk", "AttributeType": "S"}],
                                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                           {"AttributeName": "sk", "KeyType": "RANGE"}],
                                BillingMode="PAY_PER_REQUEST")
            # WHEN a transaction and a query go through the front
            client.transact_write_items(TransactItems=[_add(name, "a")])
            items = client.query(TableName=name, KeyConditionExpression="pk = :a",
                                 ExpressionAttributeValues={":a": {"S": "a"}})["Items"]
            # THEN they reached the moto server
            assert [int(i["n"]["N"]) for i in items] == [1]
            assert front.stats().transactions == 1
    finally:
        moto.stop()

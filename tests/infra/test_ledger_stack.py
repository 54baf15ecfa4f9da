"""The job ledger in the stack: a durable, encrypted on-demand table; the functions told where it is; grants
that are exactly what the DynamoDB ledger adapter calls (checked by running the adapter); one output."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from aws_cdk.assertions import Match, Template
from moto import mock_aws

from fanfetch.adapters import ledger_dynamodb_items
from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.core.ledger import GroupRecord, Validator
from stacks import FanfetchStack
from stacks import ledger as ledger_construct
from tests.infra.conftest import logical_id


def _statements_of(template: Template, stack: FanfetchStack, role: Any) -> list[dict[str, Any]]:
    role_ref = {"Ref": logical_id(stack, role)}
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if role_ref in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _grants(template: Template, stack: FanfetchStack, role: Any, service: str) -> dict[str, set[str]]:
    """action -> resources (as JSON) for the ``service:`` actions granted to ``role``."""
    grants: dict[str, set[str]] = {}
    for statement in _statements_of(template, stack, role):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            if action.startswith(f"{service}:"):
                grants.setdefault(action, set()).update(json.dumps(r, sort_keys=True) for r in resources)
    return grants


def _table_arn(stack: FanfetchStack) -> str:
    return json.dumps({"Fn::GetAtt": [logical_id(stack, stack.ledger.table), "Arn"]}, sort_keys=True)


class _RecordingClient:
    """Forwards to a (moto) DynamoDB client and records the IAM action each call needs."""

    _ACTIONS = {"put_item": "PutItem", "update_item": "UpdateItem", "get_item": "GetItem", "query": "Query",
                "scan": "Scan", "delete_item": "DeleteItem", "batch_write_item": "BatchWriteItem"}
    _TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem"}

    def __init__(self, client: Any):
        self._client = client
        self.actions: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            if name == "transact_write_items":
                self.actions.update(f"dynamodb:{self._TRANSACT[op]}" for item in kwargs["TransactItems"] for op in item)
            else:
                self.actions.add(f"dynamodb:{self._ACTIONS[name]}")
            return attr(**kwargs)

        return call


@pytest.fixture(scope="module")
def adapter_actions() -> dict[str, set[str]]:
    """The IAM actions the adapter's calls need, per role: the producer opens jobs, the worker does the rest."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_ledger_table(client, "t")
        producer, worker = _RecordingClient(client), _RecordingClient(client)
        for _ in range(2):  # the second open is a retried producer (job exists)
            DynamoDBLedger(producer, "t").open_job("j", total_groups=2, total_files=2, results_location="", now=1.0)
        ledger = DynamoDBLedger(worker, "t")
        for group, status in (("a", "ok"), ("a", "ok"), ("b", "failed")):
            ledger.record_group(GroupRecord(job_id="j", group_id=group, status=status, key=f"k/{group}",
                                            validators=(Validator("http://o/x", etag='"e"'),)))
        ledger.get_job("j")
        ledger.list_groups("j", status="failed")
        ledger.last_validators("k/a")
    return {"producer": producer.actions, "worker": worker.actions}


def test_the_ledger_table_is_on_demand_recoverable_encrypted_and_retained(template: Template) -> None:
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "SSESpecification": {"SSEEnabled": True},
                    "ProvisionedThroughput": Match.absent(),
                }
            ),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_the_table_keys_are_the_ones_the_adapter_writes(template: Template) -> None:
    assert (ledger_construct.PARTITION_KEY, ledger_construct.SORT_KEY) == (
        ledger_dynamodb_items.PARTITION_KEY, ledger_dynamodb_items.SORT_KEY)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"}],
        },
    )


def test_both_functions_are_told_the_table_and_only_the_worker_the_bus(
    template: Template, default_stack: FanfetchStack
) -> None:
    table_ref = {"Ref": logical_id(default_stack, default_stack.ledger.table)}
    functions = template.find_resources("AWS::Lambda::Function")
    env = {
        name: functions[logical_id(default_stack, fn.function)]["Properties"]["Environment"]["Variables"]
        for name, fn in (("producer", default_stack.producer), ("worker", default_stack.worker))
    }
    assert env["producer"]["LEDGER_TABLE"] == env["worker"]["LEDGER_TABLE"] == table_ref
    assert env["worker"]["EVENT_BUS_NAME"] == "default"
    assert "EVENT_BUS_NAME" not in env["producer"]  # it may not publish (no events:PutEvents grant)


def test_ledger_grants_cover_what_the_adapter_calls_on_this_table_only(
    template: Template, default_stack: FanfetchStack, adapter_actions: dict[str, set[str]]
) -> None:
    table = _table_arn(default_stack)
    # The exact grants (no Scan, no deletes, no batch writes); the producer's GetItem backs open_job's
    # read-back when a condition failure comes without the old item (DynamoDB returns it; some emulators do not).
    expected = {
        "producer": {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"},
        "worker": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query"},
    }
    for role_name, fn in (("producer", default_stack.producer), ("worker", default_stack.worker)):
        grants = _grants(template, default_stack, fn.role, "dynamodb")
        assert set(grants) == expected[role_name], role_name
        # Sufficient: every action the adapter's calls needed when run under moto is granted...
        assert adapter_actions[role_name] <= set(grants), role_name
        # ...and only on the ledger table (it has no indexes).
        assert all(resources == {table} for resources in grants.values()), (role_name, grants)


def test_only_the_worker_may_put_events_and_only_on_the_default_bus(
    template: Template, default_stack: FanfetchStack
) -> None:
    default_bus = json.dumps(
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":events:", {"Ref": "AWS::Region"}, ":",
                           {"Ref": "AWS::AccountId"}, ":event-bus/default"]]},
        sort_keys=True,
    )
    assert _grants(template, default_stack, default_stack.worker.role, "events") == {"events:PutEvents": {default_bus}}
    assert _grants(template, default_stack, default_stack.producer.role, "events") == {}


def test_the_table_name_is_a_stack_output(template: Template, default_stack: FanfetchStack) -> None:
    template.has_output(
        "LedgerTableName", {"Value": {"Ref": logical_id(default_stack, default_stack.ledger.table)}}
    )

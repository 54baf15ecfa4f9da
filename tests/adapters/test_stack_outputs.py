"""Stack outputs read by role (the ledger table optional), against botocore's Stubber; a missing stack or output
is an input error naming it."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from fanfetch.adapters.stack_outputs import resolve_stack
from fanfetch.errors import InputError

DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/dlq"
WORK = "https://sqs.us-east-1.amazonaws.com/123456789012/work"


def _client(service: str):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _stack(outputs: dict[str, str]) -> dict:
    return {"Stacks": [{"StackName": "s", "CreationTime": "2024-01-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}


FULL = {"BucketName": "b", "QueueUrl": WORK, "DeadLetterQueueUrl": DLQ, "ProducerFunctionName": "p",
        "WorkerFunctionName": "w", "AlarmTopicArn": "arn:t"}


def test_stack_outputs_are_read_by_role_and_the_ledger_is_optional():
    client = _client("cloudformation")
    with Stubber(client) as stub:
        stub.add_response("describe_stacks", _stack(FULL), {"StackName": "s"})
        stub.add_response("describe_stacks", _stack(FULL | {"LedgerTableName": "ledger"}), {"StackName": "s"})
        old, new = resolve_stack("s", cfn_client=client), resolve_stack("s", cfn_client=client)
    assert (old.bucket, old.queue_url, old.dlq_url, old.producer_function, old.ledger_table) == ("b", WORK, DLQ, "p",
                                                                                                  None)
    assert new.ledger_table == "ledger"


def test_a_missing_stack_or_output_is_an_input_error_naming_it():
    client = _client("cloudformation")
    with Stubber(client) as stub:
        stub.add_client_error("describe_stacks", service_error_code="ValidationError", http_status_code=400)
        no_queue = {k: v for k, v in FULL.items() if k != "QueueUrl"}
        stub.add_response("describe_stacks", _stack(no_queue), {"StackName": "s"})
        with pytest.raises(InputError, match="'gone' not found"):
            resolve_stack("gone", cfn_client=client)
        with pytest.raises(InputError, match="lacks output.* QueueUrl"):
            resolve_stack("s", cfn_client=client)

"""Finds a deployed fanfetch stack's resources (bucket, queues, functions, ledger) from its
CloudFormation outputs, so operations commands need only ``--stack NAME``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.aws_errors import error_code
from fanfetch.errors import FanfetchError, InputError

__all__ = ["StackOutputs", "resolve_stack", "REQUIRED_OUTPUTS"]

# CfnOutput ids in stacks/fanfetch_stack.py → StackOutputs fields.
REQUIRED_OUTPUTS = {
    "BucketName": "bucket",
    "QueueUrl": "queue_url",
    "DeadLetterQueueUrl": "dlq_url",
    "ProducerFunctionName": "producer_function",
    "WorkerFunctionName": "worker_function",
}


@dataclass(frozen=True)
class StackOutputs:
    """The resources of one deployed stack, by role."""

    name: str
    bucket: str
    queue_url: str
    dlq_url: str
    producer_function: str
    worker_function: str
    ledger_table: str | None = None  # None: a stack deployed before the ledger existed


def resolve_stack(name: str, *, cfn_client: Any) -> StackOutputs:
    """Read ``name``'s outputs with DescribeStacks; InputError when the stack or an output is missing."""
    try:
        stacks = cfn_client.describe_stacks(StackName=name).get("Stacks", [])
    except ClientError as exc:
        # CloudFormation answers a missing stack with ValidationError (there is no NotFound code).
        if error_code(exc) == "ValidationError":
            raise InputError(f"stack {name!r} not found (is it deployed in this account and region?)") from None
        raise FanfetchError(f"cannot describe stack {name!r}: {exc.response.get('Error', {}).get('Code')}") from exc
    except BotoCoreError as exc:
        raise FanfetchError(f"cannot describe stack {name!r}: {type(exc).__name__}: {exc}") from exc
    if not stacks:
        raise InputError(f"stack {name!r} not found")
    outputs = {str(o["OutputKey"]): str(o.get("OutputValue", "")) for o in stacks[0].get("Outputs") or []}
    missing = sorted(key for key in REQUIRED_OUTPUTS if not outputs.get(key))
    if missing:
        raise InputError(f"stack {name!r} lacks output(s) {', '.join(missing)}: is it a fanfetch stack?")
    values = {field: outputs[key] for key, field in REQUIRED_OUTPUTS.items()}
    return StackOutputs(name=name, ledger_table=outputs.get("LedgerTableName") or None, **values)

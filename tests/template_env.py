"""What the deployed functions see: synthesize the real ``FanfetchStack`` in-process (bundling skipped) and
return each function's environment exactly as the template sets it, with its ``Ref``/``Fn::GetAtt`` resolved
to the names of real (moto) resources — so a handler can be run with nothing else.

``synthesize(context)`` once (the synth takes seconds), then ``stack.environment("Worker", resources)``.
A reference to a resource the caller did not supply fails loudly: a new variable in the template must be
given a real value here, never silently dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FUNCTIONS", "StackResources", "SynthesizedStack", "TemplateError", "lambda_runtime_env", "synthesize"]

FUNCTIONS = ("Producer", "Worker")  # construct ids of the stack's two functions


class TemplateError(LookupError):
    """The template references something this helper cannot resolve to a real value."""


@dataclass(frozen=True)
class StackResources:
    """The real resources standing in for the stack's: what each ``Ref``/``Fn::GetAtt`` resolves to."""

    bucket_name: str
    queue_url: str
    dead_letter_queue_url: str
    ledger_table: str
    region: str = "us-east-1"
    account: str = "123456789012"


@dataclass(frozen=True)
class QueueSettings:
    """How the template wires the work queue to the worker (what an event source mapping emulation honours)."""

    visibility_timeout_s: int
    max_receive_count: int
    batch_size: int
    worker_timeout_s: int
    producer_timeout_s: int


@dataclass(frozen=True)
class SynthesizedStack:
    """A synthesized template plus the logical ids of the resources the functions reference."""

    template: Mapping[str, Any]
    logical_ids: Mapping[str, str]  # role ("bucket", "queue", "dead_letter_queue", "ledger_table", "Producer", ...)

    def resource(self, role: str) -> Mapping[str, Any]:
        return self.template["Resources"][self.logical_ids[role]]

    def environment(self, function: str, resources: StackResources) -> dict[str, str]:
        """Exactly the variables the template gives ``function`` ("Producer" or "Worker"), resolved."""
        if function not in FUNCTIONS:
            raise TemplateError(f"unknown function {function!r}; the stack has {', '.join(FUNCTIONS)}")
        variables = self.resource(function)["Properties"].get("Environment", {}).get("Variables", {})
        return {name: _resolve(value, self._values(resources), where=f"{function}.{name}")
                for name, value in variables.items()}

    def memory_mb(self, function: str) -> int:
        return int(self.resource(function)["Properties"]["MemorySize"])

    def queue_settings(self) -> QueueSettings:
        queue = self.resource("queue")["Properties"]
        mappings = [r["Properties"] for r in self.template["Resources"].values()
                    if r["Type"] == "AWS::Lambda::EventSourceMapping"]
        if len(mappings) != 1:
            raise TemplateError(f"expected one event source mapping, found {len(mappings)}")
        return QueueSettings(
            visibility_timeout_s=int(queue["VisibilityTimeout"]),
            max_receive_count=int(queue["RedrivePolicy"]["maxReceiveCount"]),
            batch_size=int(mappings[0].get("BatchSize", 10)),
            worker_timeout_s=int(self.resource("Worker")["Properties"]["Timeout"]),
            producer_timeout_s=int(self.resource("Producer")["Properties"]["Timeout"]),
        )

    def _values(self, resources: StackResources) -> dict[tuple[str, str], str]:
        """(logical id, "Ref" or attribute) → the real value, for the resources the caller supplied."""
        ids, r = self.logical_ids, resources
        queues = {"queue": r.queue_url, "dead_letter_queue": r.dead_letter_queue_url}
        values: dict[tuple[str, str], str] = {
            (ids["bucket"], "Ref"): r.bucket_name,
            (ids["bucket"], "Arn"): f"arn:aws:s3:::{r.bucket_name}",
            (ids["ledger_table"], "Ref"): r.ledger_table,
            (ids["ledger_table"], "Arn"): f"arn:aws:dynamodb:{r.region}:{r.account}:table/{r.ledger_table}",
            ("AWS::Region", "Ref"): r.region,
            ("AWS::AccountId", "Ref"): r.account,
            ("AWS::Partition", "Ref"): "aws",
            ("AWS::URLSuffix", "Ref"): "amazonaws.com",
        }
        for role, url in queues.items():
            name = url.rstrip("/").rsplit("/", 1)[-1]
            values[(ids[role], "Ref")] = values[(ids[role], "QueueUrl")] = url
            values[(ids[role], "QueueName")] = name
            values[(ids[role], "Arn")] = f"arn:aws:sqs:{r.region}:{r.account}:{name}"
        return values


def _resolve(value: Any, values: Mapping[tuple[str, str], str], *, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        (function, argument), = value.items()
        if function == "Ref":
            key = (str(argument), "Ref")
        elif function == "Fn::GetAtt":
            logical, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
            key = (str(logical), str(attribute))
        elif function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(_resolve(part, values, where=where) for part in parts)
        else:
            raise TemplateError(f"{where}: cannot resolve {function} ({value!r})")
        if key not in values:
            raise TemplateError(f"{where}: {function} {argument!r} names no resource given to the helper")
        return values[key]
    raise TemplateError(f"{where}: unexpected value {value!r}")


def synthesize(context: Mapping[str, Any] | None = None) -> SynthesizedStack:
    """Synthesize ``FanfetchStack`` with cdk.json's flags plus ``context`` (e.g. ``{"outputPrefix": "runs/"}``)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from aws_cdk.assertions import Template

    from tests.infra.conftest import build_stack, logical_id

    stack = build_stack(dict(context or {}))
    constructs = {"bucket": stack.storage.bucket, "queue": stack.queues.queue,
                  "dead_letter_queue": stack.queues.dead_letter_queue, "ledger_table": stack.ledger.table,
                  "Producer": stack.producer.function, "Worker": stack.worker.function}
    return SynthesizedStack(template=Template.from_stack(stack).to_json(),
                            logical_ids={role: logical_id(stack, c) for role, c in constructs.items()})


def lambda_runtime_env(function_name: str, *, memory_mb: int, region: str = "us-east-1") -> dict[str, str]:
    """The reserved variables the Lambda runtime itself sets (not in the template), as far as our code reads them."""
    return {"AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb), "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST"}

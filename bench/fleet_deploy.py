"""The synthesized stack "deployed" onto moto, and its functions run as processes with their template environment.

``deploy`` creates what the template declares and the functions reference — the bucket, the work queue with
its redrive policy to the DLQ, the ledger table with the template's key schema — plus an EventBridge rule
catching "Job Finished" into a queue the checks read. ``function_env`` is exactly the function's template
environment (``tests/template_env.py``) plus what the Lambda runtime sets and the endpoint and credentials of
the loopback stand-ins. ``run_producer`` and ``start_container`` run ``bench/fleet_container.py`` with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.template_env import StackResources, SynthesizedStack, lambda_runtime_env

__all__ = ["Deployment", "Container", "deploy", "function_env", "run_producer", "start_container",
           "JOB_FINISHED_PATTERN"]

REPO = Path(__file__).resolve().parent.parent
JOB_FINISHED_PATTERN = {"source": ["fanfetch"], "detail-type": ["Job Finished"]}


@dataclass(frozen=True)
class Deployment:
    """The real resources behind the stack's references, and where "Job Finished" events end up."""

    resources: StackResources
    finished_queue_url: str
    visibility_timeout_s: int
    max_receive_count: int
    batch_size: int


def deploy(stack: SynthesizedStack, *, s3: Any, sqs: Any, dynamodb: Any, events: Any, name: str = "fanfetch",
           visibility_timeout_s: int | None = None) -> Deployment:
    """Create the template's bucket, queues and ledger table (moto). ``visibility_timeout_s`` overrides the
    template's (6 × the worker timeout, 30 min by default) so that a failed invocation's batch comes back
    within a bench run; maxReceiveCount and the batch size are the template's."""
    settings = stack.queue_settings()
    suffix = uuid.uuid4().hex[:8]
    bucket = f"{name}-bucket-{suffix}"
    s3.create_bucket(Bucket=bucket)
    dlq = sqs.create_queue(QueueName=f"{name}-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    visibility = visibility_timeout_s if visibility_timeout_s is not None else settings.visibility_timeout_s
    queue = sqs.create_queue(QueueName=f"{name}-work-{suffix}", Attributes={
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}),
    })["QueueUrl"]
    table = f"{name}-ledger-{suffix}"
    props = stack.resource("ledger_table")["Properties"]
    extra = {k: props[k] for k in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes") if k in props}
    dynamodb.create_table(TableName=table, AttributeDefinitions=props["AttributeDefinitions"],
                          KeySchema=props["KeySchema"], BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
                          **extra)
    finished = sqs.create_queue(QueueName=f"{name}-finished-{suffix}")["QueueUrl"]
    finished_arn = sqs.get_queue_attributes(QueueUrl=finished, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"{name}-job-finished-{suffix}"
    events.put_rule(Name=rule, EventPattern=json.dumps(JOB_FINISHED_PATTERN))
    events.put_targets(Rule=rule, Targets=[{"Id": "finished", "Arn": finished_arn}])
    return Deployment(resources=StackResources(bucket_name=bucket, queue_url=queue, dead_letter_queue_url=dlq,
                                               ledger_table=table),
                      finished_queue_url=finished, visibility_timeout_s=visibility,
                      max_receive_count=settings.max_receive_count, batch_size=settings.batch_size)


def function_env(stack: SynthesizedStack, function: str, resources: StackResources, *, aws_endpoint: str,
                 dynamodb_endpoint: str | None = None) -> dict[str, str]:
    """The template's variables for ``function``, the runtime's reserved ones, and loopback AWS access."""
    env = stack.environment(function, resources)
    env.update(lambda_runtime_env(f"fanfetch-{function.lower()}", memory_mb=stack.memory_mb(function),
                                  region=resources.region))
    env.update({
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        # never read this machine's AWS configuration or ask an instance metadata service for credentials
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true",
    })
    if dynamodb_endpoint:
        env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_endpoint
    return env


def _command(mode: str, out: Path, stack: SynthesizedStack, function: str, *extra: str) -> list[str]:
    settings = stack.queue_settings()
    timeout = settings.worker_timeout_s if function == "Worker" else settings.producer_timeout_s
    return [sys.executable, "-m", "bench.fleet_container", mode, "--out", str(out),
            "--function-name", f"fanfetch-{function.lower()}", "--memory-mb", str(stack.memory_mb(function)),
            "--timeout-s", str(timeout), *extra]


def run_producer(stack: SynthesizedStack, env: Mapping[str, str], event: Mapping[str, Any], workdir: Path, *,
                 timeout_s: float = 300.0) -> dict[str, Any]:
    """Invoke the producer once in its own process with ``env`` only; its answer (or raise with its log)."""
    event_file, out, log = workdir / "producer-event.json", workdir / "producer-out.json", workdir / "producer.log"
    event_file.write_text(json.dumps(event))
    with log.open("wb") as sink:
        code = subprocess.run(_command("produce", out, stack, "Producer", "--event", str(event_file)),
                              cwd=REPO, env=dict(env), stdout=sink, stderr=subprocess.STDOUT, timeout=timeout_s,
                              check=False).returncode
    result = json.loads(out.read_text()) if out.exists() else {"error": f"no result (exit {code})"}
    if code != 0 or "error" in result:
        raise RuntimeError(f"producer failed: {result.get('error')}; log {log}:\n{log.read_text()[-3000:]}")
    return result


@dataclass
class Container:
    """A worker container process draining the queue."""

    name: str
    process: subprocess.Popen[bytes]
    out: Path
    log: Path

    def result(self, timeout_s: float) -> dict[str, Any]:
        """Wait for it to finish; its poller counters (``error`` set when it failed)."""
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return {"container": self.name, "error": f"still running after {timeout_s:.0f} s", "log": str(self.log)}
        result = json.loads(self.out.read_text()) if self.out.exists() else {"error": f"no result (exit {code})"}
        return {**result, "container": self.name, "exit": code, "log": str(self.log)}


def start_container(stack: SynthesizedStack, env: Mapping[str, str], queue_url: str, workdir: Path, name: str, *,
                    batch_size: int, give_up_s: float = 600.0) -> Container:
    """Start one worker container (its own process, ``env`` only) polling ``queue_url``."""
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    sink = log.open("wb")
    try:
        process = subprocess.Popen(
            _command("drain", out, stack, "Worker", "--queue-url", queue_url, "--name", name,
                     "--batch-size", str(batch_size), "--give-up-s", str(give_up_s)),
            cwd=REPO, env=dict(env), stdout=sink, stderr=subprocess.STDOUT)
    finally:
        sink.close()
    return Container(name=name, process=process, out=out, log=log)

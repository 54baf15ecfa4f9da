"""Each handler runs with only the variables its function has in the synthesized template (own process, moto
server, real origin): producer and worker must agree on where the job's results are (issue 8 point 5)."""

from __future__ import annotations

import json

import boto3
import pytest

from bench.fleet_deploy import deploy, function_env, run_producer, start_container
from fanfetch.cli.demo import expected_station_csv
from tests.template_env import StackResources, TemplateError, synthesize

pytestmark = pytest.mark.slow

PREFIX = "runs/2026"


@pytest.fixture(scope="module")
def prefixed_stack():
    """The stack as deployed with an output prefix; the origin's port is allowed by the test's own synth."""
    return synthesize({"outputPrefix": PREFIX, "allowHosts": "127.0.0.1"})


def test_the_helper_returns_exactly_the_template_variables_with_references_resolved(prefixed_stack):
    # GIVEN real names for the stack's resources
    resources = StackResources(bucket_name="b", queue_url="http://127.0.0.1:1/123456789012/work",
                               dead_letter_queue_url="http://127.0.0.1:1/123456789012/dlq", ledger_table="t")

    # WHEN the helper resolves each function's environment
    producer = prefixed_stack.environment("Producer", resources)
    worker = prefixed_stack.environment("Worker", resources)

    # THEN each has exactly its template's variable names, references replaced by the real names
    for name, env in (("Producer", producer), ("Worker", worker)):
        assert set(env) == set(prefixed_stack.resource(name)["Properties"]["Environment"]["Variables"])
    assert producer["QUEUE_URL"] == resources.queue_url and worker["DLQ_URL"] == resources.dead_letter_queue_url
    assert producer["BUCKET_NAME"] == worker["BUCKET_NAME"] == "b"
    assert producer["LEDGER_TABLE"] == worker["LEDGER_TABLE"] == "t"
    assert "QUEUE_URL" not in worker  # the worker is fed by the event source mapping, it never sends work
    # AND both functions are given the same output prefix (the results location depends on it)
    assert producer["OUTPUT_PREFIX"] == worker["OUTPUT_PREFIX"] == PREFIX


def test_an_unknown_reference_fails_loudly_instead_of_being_dropped(prefixed_stack):
    # GIVEN a template whose worker gains a variable referencing a resource the helper was not given
    template = json.loads(json.dumps(prefixed_stack.template))
    variables = template["Resources"][prefixed_stack.logical_ids["Worker"]]["Properties"]["Environment"]["Variables"]
    variables["TOPIC_ARN"] = {"Ref": "SomeTopic1234"}
    stack = type(prefixed_stack)(template=template, logical_ids=prefixed_stack.logical_ids)
    resources = StackResources(bucket_name="b", queue_url="q", dead_letter_queue_url="d", ledger_table="t")

    # WHEN / THEN resolving it names the variable and the reference
    with pytest.raises(TemplateError, match=r"Worker\.TOPIC_ARN: Ref 'SomeTopic1234'"):
        stack.environment("Worker", resources)


def test_with_a_prefix_the_job_finished_event_points_at_the_results_the_worker_wrote(moto_server, demo_origin,
                                                                                       tmp_path):
    # GIVEN the stack synthesized with an output prefix and the origin allowed, "deployed" onto moto
    stack = synthesize({"outputPrefix": PREFIX, "allowHosts": demo_origin.host_port})
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    deployment = deploy(stack, s3=s3, sqs=sqs, dynamodb=boto3.client("dynamodb"), events=boto3.client("events"),
                        visibility_timeout_s=30)
    resources = deployment.resources
    # AND a manifest in the bucket: the origin's stations and one group whose file does not exist (404)
    template = demo_origin.url_template
    groups = [{"group": str(s.station_id), "key": f"stations/{s.station_id}.csv", "merge": "csv",
               "urls": [template.format(station_id=s.station_id, year=y) for y in range(s.first_year, s.last_year + 1)]}
              for s in demo_origin.stations]
    groups.append({"group": "ghost", "key": "stations/ghost.csv", "merge": "csv",
                   "urls": [template.format(station_id=1000, year=1800)]})
    s3.put_object(Bucket=resources.bucket_name, Key="manifests/stations.jsonl",
                  Body="\n".join(json.dumps(g) for g in groups).encode())
    # AND each function's environment is its template's only (plus runtime, endpoint and credentials)
    producer_env = function_env(stack, "Producer", resources, aws_endpoint=moto_server)
    worker_env = function_env(stack, "Worker", resources, aws_endpoint=moto_server)

    # WHEN the producer runs in its own process, then one worker container drains the queue in another
    produced = run_producer(stack, producer_env, {"manifest": f"s3://{resources.bucket_name}/manifests/stations.jsonl"},
                            tmp_path)
    drained = start_container(stack, worker_env, resources.queue_url, tmp_path, "c0",
                              batch_size=deployment.batch_size, give_up_s=90).result(timeout_s=120)

    # THEN the container drained the queue without a failed invocation
    assert drained.get("error") is None and drained["failed_invocations"] == 0, drained
    assert produced["groups"] == produced["messages"] == len(groups)
    # AND exactly one "Job Finished" event was published ...
    events = sqs.receive_message(QueueUrl=deployment.finished_queue_url, MaxNumberOfMessages=10,
                                 WaitTimeSeconds=1).get("Messages", [])
    assert len(events) == 1
    detail = json.loads(events[0]["Body"])["detail"]
    # ... pointing at the results manifest under the prefix, where the worker wrote it
    results_key = f"{PREFIX}/_jobs/{produced['job_id']}/results.jsonl"
    assert detail["results_location"] == f"s3://{resources.bucket_name}/{results_key}"
    bucket, key = detail["results_location"].removeprefix("s3://").split("/", 1)
    lines = [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]
    # AND it is complete: every group once, the 404 failed with its reason, the rest ok and stored byte-exact
    assert sorted(line["group"] for line in lines) == sorted(g["group"] for g in groups)
    by_group = {line["group"]: line for line in lines}
    assert by_group["ghost"]["status"] == "failed" and "404" in by_group["ghost"]["error"]
    for station in demo_origin.stations:
        assert by_group[str(station.station_id)]["status"] == "ok"
        body = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/stations/{station.station_id}.csv")["Body"].read()
        assert body == expected_station_csv(station)

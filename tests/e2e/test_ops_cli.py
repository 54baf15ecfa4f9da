"""The ops commands end to end over real HTTP against moto's server: a stack found by name in
CloudFormation, the producer run in-process as the Lambda invoke, the DynamoDB ledger, the queues."""

from __future__ import annotations

import json

import boto3
import pytest
from rich.console import Console

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.cli.main import main
from fanfetch.cli.ops import OpsDeps
from fanfetch.core.ledger import GroupRecord
from fanfetch.core.messages import decode_message
from fanfetch.ports import InvocationFailed
from tests.conftest import FakeLambdaContext, load_handler

pytestmark = pytest.mark.slow




@pytest.fixture
def stack(moto_server, monkeypatch):
    """A deployed stack as the ops commands see it: real queues, bucket and ledger table in moto, and a
    CloudFormation stack whose outputs name them (a template of outputs and one harmless resource)."""
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="ff-bucket")
    dlq = sqs.create_queue(QueueName="ff-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="ff-work")["QueueUrl"]
    create_ledger_table(boto3.client("dynamodb"), "ff-ledger")
    outputs = {"BucketName": "ff-bucket", "QueueUrl": queue, "DeadLetterQueueUrl": dlq,
               "ProducerFunctionName": "ff-producer", "WorkerFunctionName": "ff-worker",
               "LedgerTableName": "ff-ledger"}
    template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    boto3.client("cloudformation").create_stack(StackName="ff", TemplateBody=json.dumps(template))
    monkeypatch.setenv("QUEUE_URL", queue)
    monkeypatch.setenv("BUCKET_NAME", "ff-bucket")
    return outputs


class InProcessProducer:
    """The Lambda invoke of submit: runs lambdas/producer/handler.py here, failing as Lambda reports it."""

    def __init__(self):
        self.module = load_handler("producer")
        self.payloads: list[dict] = []

    def invoke(self, function_name, payload):
        self.payloads.append(dict(payload))
        try:
            return self.module.handler(json.loads(json.dumps(payload)), FakeLambdaContext())
        except Exception as exc:  # noqa: BLE001 — Lambda turns any exception into a FunctionError
            raise InvocationFailed(function_name, type(exc).__name__, str(exc)) from exc


def _run(argv: list[str], deps: OpsDeps | None = None) -> tuple[int, str]:
    """``fanfetch ARGV`` through the real command (``fanfetch.cli.main.main``), with ``deps`` for the parts
    a test replaces (the producer invoke)."""
    console = Console(record=True, width=200, force_terminal=False)
    code = main(argv, console=console, ops_deps=deps)
    return code, console.export_text()


def _queue_bodies(url: str) -> list[str]:
    sqs, bodies = boto3.client("sqs"), []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                          VisibilityTimeout=30).get("Messages", []):
        bodies.extend(m["Body"] for m in messages)
    return bodies


def test_submit_uploads_the_manifest_runs_the_producer_and_prints_the_job_id(stack, tmp_path, capsys):
    # GIVEN a manifest of 3 groups on this machine
    manifest = tmp_path / "stations.jsonl"
    manifest.write_text("\n".join(json.dumps({"group": f"s{i}", "urls": [f"https://example.org/{i}.csv"]})
                                  for i in range(3)))
    producer = InProcessProducer()

    # WHEN it is submitted to the stack by name, asking for JSON
    code, out = _run(["submit", str(manifest), "--stack", "ff", "--merge", "csv", "--json"],
                     OpsDeps(invoker=lambda endpoint: producer))

    # THEN the producer's own answer is printed, it read the manifest from the stack's bucket, and the
    # work queue holds one message per group of that job
    answer = json.loads(out)
    assert code == 0 and answer["groups"] == answer["messages"] == 3
    [payload] = producer.payloads
    assert payload == {"manifest": f"s3://ff-bucket/_manifests/{answer['job_id']}/stations.jsonl", "merge": "csv"}
    stored = boto3.client("s3").get_object(Bucket="ff-bucket", Key=payload["manifest"].split("/", 3)[3])
    assert stored["Body"].read() == manifest.read_bytes()
    messages = [decode_message(b) for b in _queue_bodies(stack["QueueUrl"])]
    assert sorted(m.group.group_id for m in messages) == ["s0", "s1", "s2"]
    assert {m.job_id for m in messages} == {answer["job_id"]}


def test_submit_refuses_a_bad_manifest_before_touching_the_stack(stack, tmp_path, capsys):
    # GIVEN a manifest with a relative URL on line 1
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"group": "a", "urls": ["/relative"]}\n')
    producer = InProcessProducer()
    # WHEN submitted / THEN exit 2 naming file and line; nothing uploaded, producer not invoked
    code, _ = _run(["submit", str(manifest), "--stack", "ff"], OpsDeps(invoker=lambda endpoint: producer))
    assert code == 2 and "bad.jsonl:1" in capsys.readouterr().err
    assert producer.payloads == [] and "Contents" not in boto3.client("s3").list_objects_v2(Bucket="ff-bucket")
    # ... and it is validated before the stack is even looked up
    code, _ = _run(["submit", str(manifest), "--stack", "no-such-stack"], OpsDeps(invoker=lambda endpoint: producer))
    assert code == 2 and "bad.jsonl:1" in capsys.readouterr().err


def test_submit_stops_at_the_producers_preflight_naming_each_refused_host_and_enqueues_nothing(stack, tmp_path,
                                                                                              monkeypatch, capsys):
    # GIVEN a manifest on two hosts the stack's workers would refuse (no allowHosts for them)
    monkeypatch.delenv("FANFETCH_ALLOW_HOSTS", raising=False)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"group": "a", "urls": ["http://127.0.0.1:8081/a"]}\n'
                        '{"group": "b", "urls": ["http://192.168.1.9/b"]}\n')
    producer = InProcessProducer()
    # WHEN it is submitted
    code, _ = _run(["submit", str(manifest), "--stack", "ff"], OpsDeps(invoker=lambda endpoint: producer))
    # THEN exit 2, each host on its own line with the context that allows it, no traceback; nothing enqueued
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2 and "Traceback" not in err, err
    assert "PreflightFailed: host 127.0.0.1:8081" in lines[0] and "-c allowHosts=127.0.0.1:8081" in lines[0]
    assert lines[1].startswith("fanfetch: error: host 192.168.1.9:80")
    assert _queue_bodies(stack["QueueUrl"]) == []


def test_a_producer_failure_is_shown_with_exit_1_and_an_input_error_with_exit_2(stack, tmp_path, monkeypatch,
                                                                                  capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"group": "a", "urls": ["https://example.org/a"]}\n')
    producer = InProcessProducer()
    deps = OpsDeps(invoker=lambda endpoint: producer)
    # GIVEN a producer whose queue is gone: its failure is not the user's input → exit 1, its message on stderr
    monkeypatch.setenv("QUEUE_URL", stack["QueueUrl"] + "-gone")
    code, _ = _run(["submit", str(manifest), "--stack", "ff"], deps)
    err = capsys.readouterr().err
    assert code == 1 and "ff-producer failed: EnqueueError" in err
    # GIVEN a producer that rejects its configuration as input (InputError) → exit 2
    monkeypatch.delenv("QUEUE_URL")
    code, _ = _run(["submit", str(manifest), "--stack", "ff"], deps)
    assert code == 2 and "InputError" in capsys.readouterr().err


def test_an_unknown_stack_is_exit_2(moto_server, capsys):
    code, _ = _run(["status", "some-job", "--stack", "nope"])
    assert code == 2 and "'nope' not found" in capsys.readouterr().err


def _ledger(stack) -> DynamoDBLedger:
    return DynamoDBLedger(boto3.client("dynamodb"), stack["LedgerTableName"])


def _record(ledger, group: str, status: str, *, at: float, error: str | None = None) -> None:
    ledger.record_group(GroupRecord(job_id="job-1", group_id=group, status=status, key=f"{group}.csv",
                                    files=2 if status == "ok" else 0, bytes=500 if status == "ok" else 0,
                                    attempts=1, error=error, finished_at=at))


def test_status_reads_progress_from_the_stacks_ledger(stack, capsys):
    # GIVEN a job of 4 groups, 2 ok, started 10 s before "now"
    ledger = _ledger(stack)
    ledger.open_job("job-1", total_groups=4, total_files=8, results_location="s3://ff-bucket/r", now=1000.0)
    _record(ledger, "a", "ok", at=1005.0)
    _record(ledger, "b", "ok", at=1006.0)
    deps = OpsDeps(now=lambda: 1010.0)

    # WHEN status is asked for, as JSON and as text
    code, out = _run(["status", "job-1", "--stack", "ff", "--json"], deps)
    text_code, text = _run(["status", "job-1", "--stack", "ff"], deps)

    # THEN counts, rate and ETA come from the ledger; a running job is exit 0
    progress = json.loads(out)
    assert code == text_code == 0
    assert (progress["state"], progress["ok"], progress["failed"], progress["files"], progress["bytes"]) == (
        "running", 2, 0, 4, 1000)
    assert progress["groups_per_s"] == pytest.approx(0.2) and progress["eta_s"] == pytest.approx(10.0)
    assert "2/4 groups (2 ok, 0 failed)" in text and "ETA 10 s" in text
    # ... and an unknown job is exit 2
    assert _run(["status", "nope", "--stack", "ff"], deps)[0] == 2


def test_status_watch_follows_the_job_to_its_end_and_failures_lists_what_failed(stack, capsys):
    # GIVEN a job of 3 groups where one more group finishes during each refresh pause, the last one failing
    ledger = _ledger(stack)
    ledger.open_job("job-1", total_groups=3, total_files=6, results_location="s3://ff-bucket/r", now=1000.0)
    pending = [("a", "ok", None), ("b", "ok", None), ("c", "failed", "https://example.org/c: 404 Not Found")]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        group, status, error = pending.pop(0)
        _record(ledger, group, status, at=1000.0 + len(pauses), error=error)

    # WHEN watched (refresh every 0.5 s, without waiting)
    code, out = _run(["status", "job-1", "--stack", "ff", "--watch", "--interval-s", "0.5"],
                     OpsDeps(now=lambda: 1010.0, sleep=sleep))

    # THEN it refreshed until the job finished, which had a failure: exit 1
    assert pauses == [0.5, 0.5, 0.5] and code == 1
    assert "finished with failures: 3/3 groups (2 ok, 1 failed)" in out

    # WHEN the failures are listed
    code, table = _run(["failures", "job-1", "--stack", "ff"])
    json_code, listed = _run(["failures", "job-1", "--stack", "ff", "--json"])
    # THEN the failed group and its reason are shown, exit 1 (the job has failures)
    assert code == json_code == 1
    assert "c.csv" in table and "404 Not Found" in table and "a.csv" not in table
    assert json.loads(listed)["failed"] == [{"group": "c", "key": "c.csv", "attempts": 1,
                                             "error": "https://example.org/c: 404 Not Found"}]


def test_redrive_moves_every_dead_letter_back_unchanged_without_a_move_task(stack):
    # GIVEN 13 dead letters (more than one receive) with their reasons as attributes; moto has no move task
    sqs = boto3.client("sqs")
    bodies = [json.dumps({"v": 1, "job": "j", "group": {"id": f"g{i}"}, "pad": "é" * i}) for i in range(13)]
    for body in bodies:
        sqs.send_message(QueueUrl=stack["DeadLetterQueueUrl"], MessageBody=body,
                         MessageAttributes={"fanfetch-error": {"DataType": "String", "StringValue": "503"}})

    # WHEN redriven
    code, out = _run(["redrive", "--stack", "ff", "--json"])

    # THEN all 13 moved by hand, byte for byte, and the DLQ is empty
    report = json.loads(out)
    assert code == 0 and (report["method"], report["moved"], report["failed"]) == ("receive-send-delete", 13, 0)
    assert sorted(_queue_bodies(stack["QueueUrl"])) == sorted(bodies)
    assert _queue_bodies(stack["DeadLetterQueueUrl"]) == []


def test_a_missing_aws_region_is_a_configuration_error_not_a_traceback(monkeypatch, capsys):
    # GIVEN an environment without any AWS region
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    # WHEN an ops command needs AWS / THEN it says so with exit 2
    code, _ = _run(["redrive", "--stack", "ff"])
    assert code == 2 and "AWS configuration" in capsys.readouterr().err


def test_finish_rewrites_the_results_and_republishes_a_lost_announcement(stack):
    # GIVEN a finished job whose "Job Finished" never went out (EventBridge failed after the last verdict)
    ledger = DynamoDBLedger(boto3.client("dynamodb"), "ff-ledger")
    location = "s3://ff-bucket/out/_jobs/j9/results.jsonl"
    ledger.open_job("j9", total_groups=2, total_files=2, results_location=location, now=1.0)
    for gid, status in (("a", "ok"), ("b", "failed")):
        ledger.record_group(GroupRecord(job_id="j9", group_id=gid, status=status, key=f"{gid}.csv", files=1,
                                        error="HTTP 404" if status == "failed" else None))
    sqs, events = boto3.client("sqs"), boto3.client("events")
    caught = sqs.create_queue(QueueName="caught")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=caught, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="finished", EventPattern=json.dumps({"source": ["fanfetch"]}))
    events.put_targets(Rule="finished", Targets=[{"Id": "q", "Arn": arn}])
    # WHEN the operator runs `fanfetch finish`
    code, out = _run(["finish", "j9", "--stack", "ff"])
    # THEN the results manifest is where the job says, and one event went out with the job's counts
    assert code == 0 and "published again" in out
    lines = boto3.client("s3").get_object(Bucket="ff-bucket", Key="out/_jobs/j9/results.jsonl")["Body"].read()
    assert sorted(json.loads(line)["group"] for line in lines.splitlines()) == ["a", "b"]
    (message,) = sqs.receive_message(QueueUrl=caught, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    detail = json.loads(message["Body"])["detail"]
    assert (detail["job_id"], detail["ok"], detail["failed"]) == ("j9", 1, 1)


def test_finish_refuses_a_job_still_running(stack, capsys):
    ledger = DynamoDBLedger(boto3.client("dynamodb"), "ff-ledger")
    ledger.open_job("j10", total_groups=3, total_files=3, results_location="", now=1.0)
    code, _ = _run(["finish", "j10", "--stack", "ff"])
    assert code == 2 and "not finished" in capsys.readouterr().err


def test_status_says_how_many_groups_never_arrived_when_the_queue_is_empty(stack):
    # GIVEN a job of 4 groups whose producer stopped after sending 2, both done; the work queue is empty
    ledger = _ledger(stack)
    ledger.open_job("job-1", total_groups=4, total_files=8, results_location="s3://ff-bucket/r", now=1000.0)
    _record(ledger, "a", "ok", at=1005.0)
    _record(ledger, "b", "ok", at=1006.0)
    deps = OpsDeps(now=lambda: 1010.0)
    # WHEN status is asked for / THEN it says 2 groups never arrived and what to do
    code, text = _run(["status", "job-1", "--stack", "ff"], deps)
    assert code == 0 and "2 groups have no verdict and the work queue is empty" in text
    assert "submit the same manifest again" in text
    assert json.loads(_run(["status", "job-1", "--stack", "ff", "--json"], deps)[1])["never_arrived"] == 2
    # GIVEN a message waiting in the queue / THEN the missing groups may still come: nothing is claimed
    boto3.client("sqs").send_message(QueueUrl=stack["QueueUrl"], MessageBody="{}")
    progress = json.loads(_run(["status", "job-1", "--stack", "ff", "--json"], deps)[1])
    assert (progress["queued"], progress["never_arrived"], progress["notes"]) == (1, None, [])


def test_status_shows_a_finished_job_not_yet_announced(stack):
    # GIVEN a job whose last verdict was counted but whose results and "Job Finished" are not out yet
    ledger = _ledger(stack)
    ledger.open_job("job-1", total_groups=1, total_files=2, results_location="s3://ff-bucket/r", now=1000.0)
    _record(ledger, "a", "ok", at=1005.0)
    # WHEN status is asked for / THEN it says so and names `fanfetch finish`
    code, text = _run(["status", "job-1", "--stack", "ff"], OpsDeps(now=lambda: 1010.0))
    assert code == 0 and "finished but not yet announced" in text and "fanfetch finish job-1" in text
    # WHEN it is announced / THEN the note is gone
    ledger.mark_announced("job-1", now=1011.0)
    progress = json.loads(_run(["status", "job-1", "--stack", "ff", "--json"], OpsDeps(now=lambda: 1012.0))[1])
    assert progress["announced_at"] == 1011.0 and progress["notes"] == []


def test_finish_of_a_job_without_a_results_location_writes_where_the_worker_would(stack):
    # GIVEN a worker function with OUTPUT_PREFIX "out" and a finished job opened without a results location
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="w", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName="ff-worker", Runtime="python3.11", Role=role, Handler="h.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18}, Environment={"Variables": {"OUTPUT_PREFIX": "out"}})
    ledger = _ledger(stack)
    ledger.open_job("j11", total_groups=1, total_files=1, results_location="", now=1.0)
    ledger.record_group(GroupRecord(job_id="j11", group_id="a", status="ok", key="a.csv", files=1))
    # WHEN the operator runs `fanfetch finish`
    code, _ = _run(["finish", "j11", "--stack", "ff"])
    # THEN the results manifest is under the worker's prefix (before: _jobs/j11/… without it)
    assert code == 0
    body = boto3.client("s3").get_object(Bucket="ff-bucket", Key="out/_jobs/j11/results.jsonl")["Body"].read()
    assert [json.loads(line)["group"] for line in body.splitlines()] == ["a"]

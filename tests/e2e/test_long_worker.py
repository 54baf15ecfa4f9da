"""``fanfetch worker`` end to end over real HTTP: SQS and S3 from moto's server, the demo origin on
127.0.0.1. Several workers share a queue without duplicate work; the heartbeat keeps a long group
from a second worker; SIGTERM finishes the batch in hand and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import boto3
import pytest
from rich.console import Console

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.cli.demo import expected_station_csv
from fanfetch.cli.demo_origin import DemoOrigin, Station
from fanfetch.cli.main import main
from fanfetch.cli.ops import OpsDeps
from fanfetch.cli.worker import PollSettings, WorkerOptions, build_long_worker
from fanfetch.core.messages import decode_message, encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.conftest import REPO
from tests.doubles.dynamodb_conflicts import ConflictingDynamoDB, DynamoDBConflictServer, MotoUpstream, fetch_stats
from tests.e2e.cli_process import FANFETCH

pytestmark = pytest.mark.slow




def _station_group(origin: DemoOrigin, station: Station) -> Group:
    urls = tuple(Source(origin.url_template.format(station_id=station.station_id, year=y))
                 for y in range(station.first_year, station.last_year + 1))
    return Group(group_id=str(station.station_id), sources=urls, key=f"stations/{station.station_id}.csv",
                 merge=MergeMode.CSV)


def _enqueue(sqs, queue: str, groups: list[Group]) -> None:
    bodies = [encode_message("job-w", g) for g in groups]
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + 10])])


def _depth(sqs, queue: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _run_workers(count: int, options: WorkerOptions) -> list:
    """Run ``count`` workers in threads until each is idle; return their summaries."""
    summaries: list = [None] * count

    def work(index: int) -> None:
        poller, close = build_long_worker(options)
        try:
            summaries[index] = poller.run()
        finally:
            close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(s is not None for s in summaries), "a worker did not finish"
    return summaries


@pytest.fixture
def dynamodb_front(moto_server, monkeypatch):
    """DynamoDB through the conflict double in front of moto's server: it serialises requests (moto's
    server DynamoDB is not thread-safe: concurrent writers lost a ledger update) and answers conflicts as
    AWS does. botocore takes the per-service endpoint from the environment; S3 and SQS stay on moto."""
    with DynamoDBConflictServer(ConflictingDynamoDB(MotoUpstream(moto_server))) as front:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", front.url)
        yield front.url


def test_three_workers_share_one_queue_and_every_group_is_fetched_and_stored_once(moto_server, dynamodb_front):
    # GIVEN 20 station groups (62 files) on one queue, an origin with a little latency, three workers
    stations = [Station(2000 + i, 2000, 2000 + i % 5) for i in range(20)]
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="out")
    queue = sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    ledger = DynamoDBLedger(boto3.client("dynamodb"), "ledger")
    create_ledger_table(boto3.client("dynamodb"), "ledger")
    with DemoOrigin(stations, latency_s=0.02) as origin:
        groups = [_station_group(origin, s) for s in stations]
        ledger.open_job("job-w", total_groups=20, total_files=sum(len(g.sources) for g in groups),
                        results_location="", now=0.0)
        _enqueue(sqs, queue, groups)
        options = WorkerOptions(queue_url=queue, dest="s3://out/p", concurrency=8, allow_hosts=(origin.host_port,),
                                poll=PollSettings(wait_time_s=1, batch_size=4, idle_exit_s=1),
                                ledger_table="ledger")  # endpoints from the environment: DynamoDB's own

        # WHEN the three drain it side by side
        summaries = _run_workers(3, options)

        # THEN every station is stored merged and byte-exact, every file was requested exactly once (no group
        # was processed twice), every message was deleted, and the work was shared
        for station in stations:
            body = s3.get_object(Bucket="out", Key=f"p/stations/{station.station_id}.csv")["Body"].read()
            assert body == expected_station_csv(station)
        assert set(origin.requests.values()) == {1}
        assert sum(origin.requests.values()) == sum(len(_station_group(origin, s).sources) for s in stations)
    assert sum(s.deleted for s in summaries) == sum(s.received for s in summaries) == 20
    assert _depth(sqs, queue) == 0
    assert sum(1 for s in summaries if s.received) >= 2
    # AND the job ledger counted each group once and saw the job finish
    job = ledger.get_job("job-w")
    assert (job.ok, job.failed, job.finished) == (20, 0, True)
    assert fetch_stats(dynamodb_front).transactions - fetch_stats(dynamodb_front).transactions_cancelled >= 20


def test_the_heartbeat_keeps_a_long_group_from_a_second_worker(moto_server):
    # GIVEN a queue whose visibility timeout (2 s) is shorter than one group takes (2.5 s), and two workers
    # that each take at most one message
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="out")
    queue = sqs.create_queue(QueueName="slow", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    station = Station(3000, 2001, 2001)
    with DemoOrigin([station], latency_s=2.5) as origin:
        _enqueue(sqs, queue, [_station_group(origin, station)])
        options = WorkerOptions(queue_url=queue, dest="s3://out", allow_hosts=(origin.host_port,),
                                endpoint_url=moto_server,
                                poll=PollSettings(wait_time_s=1, idle_exit_s=3, max_messages=1))

        # WHEN both run (the one without a message polls for 3 s, past the moment it would reappear)
        summaries = _run_workers(2, options)

        # THEN the message was received once in all: its visibility was extended while it ran
        assert sum(s.received for s in summaries) == 1 and origin.total_requests == 1
    assert s3.get_object(Bucket="out", Key="stations/3000.csv")["Body"].read() == expected_station_csv(station)
    assert _depth(sqs, queue) == 0


def test_the_worker_command_stores_locally_and_dead_letters_a_404_with_its_reason(moto_server, tmp_path):
    # GIVEN a queue with a good station and a group whose file does not exist, and a DLQ
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="work")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    station = Station(4000, 2010, 2012)
    with DemoOrigin([station]) as origin:
        ghost = Group(group_id="ghost", sources=(Source(origin.url_template.format(station_id=1, year=1800)),),
                      key="ghost.csv", merge=MergeMode.CSV)
        _enqueue(sqs, queue, [_station_group(origin, station), ghost])
        argv = ["worker", "--queue-url", queue, "--out", str(tmp_path / "out"), "--dlq-url", dlq,
                "--allow-host", origin.host_port, "--wait-time-s", "1", "--idle-exit-s", "1", "--concurrency", "4",
                "--json"]
        console = Console(record=True, width=200)

        # WHEN the worker command runs until idle (the real `fanfetch` command, without its signal handlers)
        code = main(argv, console=console, ops_deps=OpsDeps(handle_signals=False))

    # THEN exit 0, the station is in the folder, the 404 is in the DLQ with its reason, the queue is empty
    summary = json.loads(console.export_text())
    assert code == 0 and (summary["reason"], summary["deleted"], summary["dead_lettered"]) == ("idle", 2, 1)
    assert (tmp_path / "out" / "stations" / "4000.csv").read_bytes() == expected_station_csv(station)
    [dead] = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"]).get("Messages", [])
    assert decode_message(dead["Body"]).group.group_id == "ghost"
    assert "404" in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    assert _depth(sqs, queue) == 0


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(moto_server, tmp_path):
    # GIVEN a worker process busy with a group whose origin answers slowly (1.5 s)
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="out")
    queue = sqs.create_queue(QueueName="work")["QueueUrl"]
    station = Station(5000, 2001, 2001)
    with DemoOrigin([station], latency_s=1.5) as origin:
        _enqueue(sqs, queue, [_station_group(origin, station)])
        env = dict(os.environ, AWS_ENDPOINT_URL=moto_server, PYTHONPATH=str(REPO))
        process = subprocess.Popen(
            [FANFETCH, "worker", "--queue-url", queue, "--bucket", "out",
             "--allow-host", origin.host_port, "--wait-time-s", "1"],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert origin.wait_for_requests(1, timeout_s=30), "the worker never started the group"

            # WHEN it is told to stop while the group is in flight
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()

    # THEN it finished that group (stored, message deleted) and exited 0 having stopped on the signal
    assert process.returncode == 0, err
    assert "worker stopped (stopped)" in out and "1 done" in out
    assert "Found credentials" not in err  # botocore's INFO chatter stays out of the worker's log
    assert s3.get_object(Bucket="out", Key="stations/5000.csv")["Body"].read() == expected_station_csv(station)
    assert _depth(sqs, queue) == 0

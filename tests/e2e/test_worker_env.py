"""``fanfetch worker`` configured like the worker Lambda, from its environment, through the installed command
(moto's server for SQS and S3); flags override the variables."""

from __future__ import annotations

import json

import boto3
import pytest

from fanfetch.cli.demo import expected_station_csv
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.e2e.cli_process import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


def _enqueue(sqs, queue, origin, stations, *, ghost: bool = False) -> None:
    groups = [Group(group_id=str(s.station_id), key=f"stations/{s.station_id}.csv", merge=MergeMode.CSV,
                    sources=tuple(Source(origin.url_template.format(station_id=s.station_id, year=y))
                                  for y in range(s.first_year, s.last_year + 1))) for s in stations]
    if ghost:
        groups.append(Group(group_id="ghost", key="ghost.csv", merge=MergeMode.CSV,
                            sources=(Source(origin.url_template.format(station_id=1, year=1800)),)))
    for group in groups:
        sqs.send_message(QueueUrl=queue, MessageBody=encode_message("job-env", group))


@pytest.fixture
def aws(moto_server):
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="out")
    return s3, sqs, sqs.create_queue(QueueName="work")["QueueUrl"], sqs.create_queue(QueueName="dlq")["QueueUrl"]


def test_the_worker_runs_on_the_lambdas_environment_alone(aws, demo_origin):
    # GIVEN the worker Lambda's environment (as ECS would get it from the function) and no flags for it
    s3, sqs, queue, dlq = aws
    station = demo_origin.stations[0]
    _enqueue(sqs, queue, demo_origin, [station], ghost=True)
    env = {"QUEUE_URL": queue, "BUCKET_NAME": "out", "OUTPUT_PREFIX": "climate", "DLQ_URL": dlq,
           "FANFETCH_ALLOW_HOSTS": demo_origin.host_port, "FANFETCH_CONCURRENCY": "4"}
    # WHEN `fanfetch worker` runs until idle
    ran = run_cli("worker", "--wait-time-s", "1", "--idle-exit-s", "1", "--json", env=env)
    # THEN the station is under OUTPUT_PREFIX in BUCKET_NAME, and the 404 went to DLQ_URL with its reason
    assert ran.code == 0, ran.err
    summary = json.loads(ran.out)
    assert (summary["deleted"], summary["dead_lettered"]) == (2, 1)
    body = s3.get_object(Bucket="out", Key=f"climate/stations/{station.station_id}.csv")["Body"].read()
    assert body == expected_station_csv(station)
    [dead] = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert "404" in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]


def test_flags_override_the_environment(aws, demo_origin):
    s3, sqs, queue, _ = aws
    station = demo_origin.stations[1]
    _enqueue(sqs, queue, demo_origin, [station])
    env = {"QUEUE_URL": "http://127.0.0.1:1/not-this-one", "BUCKET_NAME": "out", "OUTPUT_PREFIX": "climate",
           "FANFETCH_ALLOW_HOSTS": demo_origin.host_port}
    ran = run_cli("worker", "--queue-url", queue, "--output-prefix", "elsewhere", "--wait-time-s", "1",
                  "--idle-exit-s", "1", env=env)
    assert ran.code == 0, ran.err
    assert s3.head_object(Bucket="out", Key=f"elsewhere/stations/{station.station_id}.csv")["ContentLength"] > 0


def test_without_a_queue_or_a_bucket_the_worker_says_which_variable_or_flag(tmp_path):
    ran = run_cli("worker", keep_aws=False, cwd=str(tmp_path))
    assert_one_line_error(ran, "--queue-url", "QUEUE_URL")
    ran = run_cli("worker", env={"QUEUE_URL": "http://127.0.0.1:1/q"}, keep_aws=False, cwd=str(tmp_path))
    assert_one_line_error(ran, "--bucket", "BUCKET_NAME")
    ran = run_cli("worker", env={"QUEUE_URL": "http://127.0.0.1:1/q", "BUCKET_NAME": "b",
                                 "FANFETCH_CONCURRENCY": "many"}, keep_aws=False, cwd=str(tmp_path))
    assert_one_line_error(ran, "FANFETCH_CONCURRENCY='many'")

"""CI smoke of the fleet bench (``bench/fleet.py``): a small job through worker containers in their own processes,
the ledger behind the DynamoDB conflict double — so the fleet machinery and its checks cannot rot."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
from moto import mock_aws

from bench.fleet import (
    OUTPUT_PREFIX,
    FleetParams,
    FleetRun,
    check_run,
    manifest_lines,
    plan_stations,
    run_fleet_scenario,
)
from bench.fleet_deploy import deploy
from fanfetch.cli.demo import expected_station_csv
from tests.template_env import synthesize


@pytest.mark.slow
@pytest.mark.timeout(240)  # a synth (~20 s) and ~10 processes; ~60 s on a loaded 2-core machine
def test_a_small_fleet_drains_the_job_and_every_check_passes(tmp_path):
    # GIVEN 30 groups (3 with a missing file) for 3 worker containers, ledger behind the conflict double
    params = dataclasses.replace(FleetParams.smoke(), modes=("conflicts",))

    # WHEN the fleet drains the job (the scenario raises ScenarioFailed if any check fails)
    table = run_fleet_scenario(params, workdir=str(tmp_path))

    # THEN the one run drained everything through its containers, the ledger saw every verdict through the
    # double, the 3 permanent failures were dead-lettered and exactly one Job Finished arrived
    ((label, *cells),) = table.rows
    row = dict(zip(table.columns[1:], cells, strict=True))
    assert "conflict double" in label
    assert row["invocations"] >= 3 and row["failed invocations"] == 0
    assert row["ledger writes"] >= params.groups  # one verdict per group at least, through the double
    assert (row["dead-lettered"], row["Job Finished"]) == ("3 (0 twice)", 1)
    assert any("checks passed" in note for note in table.notes)


@pytest.fixture(scope="module")
def stack():
    return synthesize({"outputPrefix": OUTPUT_PREFIX, "allowHosts": "127.0.0.1:1"})


@pytest.mark.slow
def test_the_checks_find_a_wrong_byte_a_lost_dead_letter_and_a_second_job_finished(stack, aws_env):
    # GIVEN a deployed fleet job whose results are right but for three faults: one output with a wrong byte,
    # one permanent failure that never reached the DLQ, and "Job Finished" published twice
    params = dataclasses.replace(FleetParams.smoke(), groups=10, missing_every=5)
    stations = plan_stations(params)
    lines = manifest_lines(params, stations, "http://127.0.0.1:1")
    failed = {line["group"] for line in lines if any("Year=1800" in url for url in line["urls"])}
    with mock_aws():
        clients = {name: boto3.client(name, region_name="us-east-1") for name in ("s3", "sqs", "dynamodb", "events")}
        deployment = deploy(stack, **clients)
        bucket, sqs = deployment.resources.bucket_name, clients["sqs"]
        for station in stations:
            if str(station.station_id) not in failed:
                body = expected_station_csv(station)
                if station is stations[0]:
                    body = body[:-2] + b"X\n"
                clients["s3"].put_object(Bucket=bucket, Key=f"{OUTPUT_PREFIX}/stations/{station.station_id}.csv",
                                         Body=body)
        lost = sorted(failed)[0]
        for group in sorted(failed)[1:]:
            sqs.send_message(QueueUrl=deployment.resources.dead_letter_queue_url, MessageBody=json.dumps(
                {"group": group}), MessageAttributes={"fanfetch-error": {"DataType": "String",
                                                                         "StringValue": "HTTP 404 for …"}})
        results_key = f"{OUTPUT_PREFIX}/_jobs/job-1/results.jsonl"
        clients["s3"].put_object(Bucket=bucket, Key=results_key, Body="".join(
            json.dumps({"group": line["group"], "status": "failed" if line["group"] in failed else "ok"}) + "\n"
            for line in lines).encode())
        detail = {"job_id": "job-1", "ok": len(stations) - len(failed), "failed": len(failed),
                  "results_location": f"s3://{bucket}/{results_key}"}
        for _ in range(2):
            sqs.send_message(QueueUrl=deployment.finished_queue_url, MessageBody=json.dumps({"detail": detail}))
        run = FleetRun(mode="conflicts", groups=len(stations), containers=1, expected_failed=len(failed),
                       job_id="job-1")

        # WHEN the fleet's checks look at it
        check_run(run, params, stations, deployment, clients)

    # THEN each fault is named, and nothing else
    assert len(run.problems) == 3, run.problems
    assert f"stations/{stations[0].station_id}.csv" in run.problems[0] and "differ" in run.problems[0]
    assert lost in run.problems[1] and "dead-lettered" in run.problems[1]
    assert run.problems[2] == "2 Job Finished events, expected exactly 1"

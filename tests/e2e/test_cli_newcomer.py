"""What a newcomer sees from the installed ``fanfetch`` command: a demo whose job id stays the same from one
run to the next, counts in the singular when there is one, an interrupted demo that checks what it stored."""

from __future__ import annotations

import json
import re
import socket

import pytest

from tests.e2e.cli_process import run_cli


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_demo_keeps_its_job_id_and_the_second_run_fetches_nothing(tmp_path):
    port = str(_free_port())
    argv = ["demo", "--out", str(tmp_path / "demo"), "--stations", "4", "--latency-ms", "0", "--quiet",
            "--port", port]
    first, second = run_cli(*argv), run_cli(*argv)
    assert first.code == second.code == 0, (first.err, second.err)
    ids = [re.search(r"^job (\w+): 4 stations", ran.out, re.M).group(1) for ran in (first, second)]
    assert ids[0] == ids[1]
    assert "0 stations fetched, 4 already stored" in second.out
    assert "checked: all 4 merged station files are byte-exact" in second.out


def test_one_group_and_one_file_are_counted_in_the_singular(tmp_path, demo_origin):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"group": "s", "urls": [demo_origin.url_template.format(station_id=1007, year=1990)],
                                "merge": "csv"}) + "\n")
    ran = run_cli("run", str(path), "--out", str(tmp_path / "o"), "--allow-host", demo_origin.host_port, "--quiet")
    assert ran.code == 0, ran.err
    assert ": 1 group, 1 file → " in ran.out
    assert not re.search(r"\b1 (groups|files)\b", ran.out), ran.out


@pytest.mark.slow
def test_s3_outputs_carry_a_content_type_and_report_reads_an_s3_destination(tmp_path, demo_origin, moto_server):
    # GIVEN a run into S3
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="dest")
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"group": str(s.station_id), "key": f"stations/{s.station_id}.csv",
                                        "merge": "csv", "urls": [demo_origin.url_template.format(
                                            station_id=s.station_id, year=s.first_year)]}) + "\n"
                            for s in demo_origin.stations))
    ran = run_cli("run", str(path), "--out", "s3://dest/run1", "--allow-host", demo_origin.host_port, "--quiet")
    assert ran.code == 0, ran.err
    job_id = re.search(r"^job (\w+):", ran.out, re.M).group(1)
    # THEN the merged CSVs are text/csv, as `aws s3 cp` would label them
    station = demo_origin.stations[0]
    assert s3.head_object(Bucket="dest", Key=f"run1/stations/{station.station_id}.csv")["ContentType"] == "text/csv"
    # WHEN its report is asked for from the S3 destination, by a prefix of the job id
    report = tmp_path / "report.html"
    ran = run_cli("report", job_id[:6], "--out-dir", "s3://dest/run1", "--html", str(report))
    # THEN the page is written from the results manifest in S3
    assert ran.code == 0, ran.err
    assert f"{len(demo_origin.stations)}/{len(demo_origin.stations)} groups" in ran.out
    assert job_id in report.read_text()
    # AND an unknown job names what is there
    ran = run_cli("report", "nope", "--out-dir", "s3://dest/run1")
    assert ran.code == 2 and job_id in ran.err

"""Pre-flight through the installed ``fanfetch run`` (moto's server for S3): a run that cannot finish stops
before the first download with exit 2 and one line per problem; the origin sees no request."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.e2e.cli_process import assert_one_line_error, run_cli


def _manifest(tmp_path, origin) -> str:
    lines = [{"group": str(s.station_id), "merge": "csv",
              "urls": [origin.url_template.format(station_id=s.station_id, year=y)
                       for y in range(s.first_year, s.last_year + 1)]} for s in origin.stations]
    path = tmp_path / "stations.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_a_forgotten_allow_host_stops_the_run_naming_the_flag_that_allows_it(tmp_path, demo_origin):
    # GIVEN an origin on 127.0.0.1 and no --allow-host
    ran = run_cli("run", _manifest(tmp_path, demo_origin), "--out", str(tmp_path / "out"), "--quiet")
    # THEN exit 2, one line naming the host and the exact flag; the origin saw nothing
    assert_one_line_error(ran, f"host {demo_origin.host_port}", f"add --allow-host {demo_origin.host_port}")
    assert demo_origin.total_requests == 0
    assert not list((tmp_path / "out").glob("_jobs/*/results.jsonl"))


@pytest.mark.slow
def test_a_mistyped_bucket_stops_the_run_before_any_download(tmp_path, demo_origin, moto_server):
    # GIVEN a bucket "climate-data" and a destination with a typo
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="climate-data")
    ran = run_cli("run", _manifest(tmp_path, demo_origin), "--out", "s3://climat-data/x", "--allow-host",
                  demo_origin.host_port, "--quiet")
    # THEN exit 2, one line naming the destination and NoSuchBucket; nothing downloaded
    assert_one_line_error(ran, "destination s3://climat-data/x does not accept writes", "NoSuchBucket")
    assert demo_origin.total_requests == 0


@pytest.mark.slow
def test_no_credentials_stop_the_run_with_one_line(tmp_path, demo_origin, moto_server):
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="climate-data")
    # GIVEN no AWS credentials at all (no metadata lookup either)
    ran = run_cli("run", _manifest(tmp_path, demo_origin), "--out", "s3://climate-data/x", "--allow-host",
                  demo_origin.host_port, "--quiet", keep_aws=False,
                  env={"AWS_ENDPOINT_URL": moto_server, "AWS_REGION": "us-east-1"})
    # THEN one line instead of one per group, exit 2, nothing downloaded
    assert_one_line_error(ran, "s3://climate-data/x", "credentials")
    assert demo_origin.total_requests == 0


@pytest.mark.slow
def test_a_writable_bucket_passes_and_the_run_stores_everything(tmp_path, demo_origin, moto_server):
    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="climate-data")
    ran = run_cli("run", _manifest(tmp_path, demo_origin), "--out", "s3://climate-data/x", "--allow-host",
                  demo_origin.host_port, "--quiet")
    assert ran.code == 0, ran.err
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="climate-data")["Contents"]}
    assert {f"x/{s.station_id}.csv" for s in demo_origin.stations} <= keys
    assert any(k.startswith("x/_jobs/") and k.endswith("/preflight.json") for k in keys)


def test_a_ledger_that_does_not_open_stops_the_run(tmp_path, demo_origin):
    not_a_db = tmp_path / "ledger.sqlite"
    not_a_db.write_bytes(b"this is not an SQLite database, " * 100)
    ran = run_cli("run", _manifest(tmp_path, demo_origin), "--out", str(tmp_path / "out"), "--allow-host",
                  demo_origin.host_port, "--ledger", str(not_a_db), "--quiet")
    assert_one_line_error(ran, f"ledger {not_a_db} does not open")
    assert demo_origin.total_requests == 0


def test_every_problem_is_named_at_once_one_line_each(tmp_path, demo_origin):
    # GIVEN a destination that is a file, and no --allow-host
    (tmp_path / "taken").write_text("a file, not a folder")
    ran = run_cli("run", _manifest(tmp_path, demo_origin), "--out", str(tmp_path / "taken"), "--quiet")
    # THEN both problems, one line each, exit 2, no traceback
    assert ran.code == 2 and "Traceback" not in ran.err
    assert len(ran.err_lines) == 3, ran.err  # the destination, the host, the ledger below the destination
    assert any("destination" in line and "does not accept writes" in line for line in ran.err_lines)
    assert any(f"--allow-host {demo_origin.host_port}" in line for line in ran.err_lines)
    assert demo_origin.total_requests == 0

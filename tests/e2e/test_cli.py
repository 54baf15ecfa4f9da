"""``fanfetch run`` and ``fanfetch demo`` as a user runs them: outputs, results manifest, resume, exit codes."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from fanfetch.cli.demo import expected_station_csv
from fanfetch.cli.main import main


def _manifest(tmp_path, origin, *, extra: list[dict] | None = None) -> str:
    template = origin.url_template
    lines = [{"group": str(s.station_id), "key": f"stations/{s.station_id}.csv",
              "urls": [template.format(station_id=s.station_id, year=y) for y in range(s.first_year, s.last_year + 1)]}
             for s in origin.stations]
    path = tmp_path / "stations.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines + (extra or [])) + "\n")
    return str(path)


def _results(dest, capsys=None) -> list[dict]:
    (results,) = list((dest / "_jobs").glob("*/results.jsonl"))
    return [json.loads(line) for line in results.read_text().splitlines()]


def test_run_stores_byte_exact_merges_and_a_results_manifest_then_resumes_without_fetching(tmp_path, demo_origin):
    # GIVEN a manifest of the origin's stations
    manifest = _manifest(tmp_path, demo_origin)
    dest = tmp_path / "out"
    # WHEN it is run
    code = main(["run", manifest, "--out", str(dest), "--merge", "csv", "--allow-host", demo_origin.host_port,
                 "--quiet"])
    # THEN every station is merged byte-exact, and the results manifest describes each stored object
    assert code == 0
    results = {r["group"]: r for r in _results(dest)}
    for station in demo_origin.stations:
        data = (dest / "stations" / f"{station.station_id}.csv").read_bytes()
        assert data == expected_station_csv(station)
        record = results[str(station.station_id)]
        assert record["status"] == "ok" and record["error"] is None
        assert record["files"] == station.last_year - station.first_year + 1
        assert record["bytes"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["attempts"] == record["files"]
    # WHEN the same command runs again
    requests_before = demo_origin.total_requests
    again = main(["run", manifest, "--out", str(dest), "--merge", "csv", "--allow-host", demo_origin.host_port,
                  "--quiet"])
    # THEN nothing is fetched, it succeeds, and the results say every group was already stored
    assert again == 0 and demo_origin.total_requests == requests_before
    assert all(r["status"] == "ok" and r["skipped"] and r["sha256"] for r in _results(dest))
    assert not any(p.name.endswith((".tmp", ".part")) for p in dest.rglob("*") if p.is_file())
    assert list((dest / ".fanfetch-tmp").iterdir()) == []


def test_a_failing_group_gives_exit_1_and_a_reason_in_the_results(tmp_path, demo_origin, capsys):
    ghost = {"group": "ghost", "urls": [demo_origin.url_template.format(station_id=1000, year=1800)]}
    manifest = _manifest(tmp_path, demo_origin, extra=[ghost])
    dest = tmp_path / "out"
    code = main(["run", manifest, "--out", str(dest), "--allow-host", demo_origin.host_port, "--quiet"])
    assert code == 1
    failed = [r for r in _results(dest) if r["status"] == "failed"]
    assert [r["group"] for r in failed] == ["ghost"]
    assert "404" in failed[0]["error"] and "Year=1800" in failed[0]["error"]
    assert not (dest / "ghost").exists()
    assert "failed ghost" in capsys.readouterr().out


def test_a_bad_manifest_exits_2_with_one_line_naming_file_and_line_and_writes_nothing(tmp_path, capsys):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"group": "a", "urls": ["https://d.example/1"]}\n{"group": "a", "urls": ["https://d.example/2"]}\n')
    dest = tmp_path / "out"
    code = main(["run", str(manifest), "--out", str(dest)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"fanfetch: error: {manifest}:2:") and "\n" not in err
    assert not dest.exists()


@pytest.mark.parametrize("argv", [["run"], ["run", "m.jsonl"], ["run", "m.jsonl", "--out", "d", "--concurrency", "0"],
                                  ["run", "m.jsonl", "--out", "d", "--merge", "zip"], ["nope"]])
def test_bad_usage_exits_2(argv):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_a_private_origin_is_refused_unless_allowed_and_never_contacted(tmp_path, demo_origin, capsys):
    # GIVEN the origin on 127.0.0.1 and no --allow-host
    dest = tmp_path / "out"
    code = main(["run", _manifest(tmp_path, demo_origin), "--out", str(dest), "--quiet"])
    # THEN the pre-flight refuses the run (exit 2) naming the flag that allows the host; no request, no results
    assert code == 2 and demo_origin.total_requests == 0
    assert f"--allow-host {demo_origin.host_port}" in capsys.readouterr().err
    assert not list(dest.glob("_jobs/*/results.jsonl"))


@pytest.mark.slow
def test_run_into_s3_through_an_s3_compatible_endpoint(tmp_path, demo_origin, aws_env):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="dest")
        code = main(["run", _manifest(tmp_path, demo_origin), "--out", "s3://dest/run1", "--merge", "csv",
                     "--endpoint-url", endpoint, "--allow-host", demo_origin.host_port, "--quiet"])
        assert code == 0
        station = demo_origin.stations[0]
        body = s3.get_object(Bucket="dest", Key=f"run1/stations/{station.station_id}.csv")["Body"].read()
        assert body == expected_station_csv(station)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dest", Prefix="run1/_jobs/")["Contents"]]
        # the bookkeeping: the results manifest, and the pre-flight's proof that the bucket takes writes
        assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["preflight.json", "results.jsonl"]
    finally:
        server.stop()


def test_demo_runs_the_sample_job_and_checks_its_outputs(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--stations", "6", "--latency-ms", "0", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "all 6 merged station files are byte-exact" in out
    assert len(list((tmp_path / "demo" / "stations").iterdir())) == 6


@pytest.mark.slow
def test_a_run_into_s3_can_keep_a_local_ledger_for_refresh_validators(tmp_path, demo_origin, moto_server):
    # GIVEN an S3 destination and --ledger on this machine
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dest")
    ledger = tmp_path / "state" / "ledger.sqlite"
    argv = ["run", _manifest(tmp_path, demo_origin), "--out", "s3://dest/r", "--merge", "csv", "--allow-host",
            demo_origin.host_port, "--ledger", str(ledger), "--quiet"]
    assert main(argv) == 0
    before = demo_origin.bytes_sent
    # WHEN the job is refreshed with nothing changed at the origin
    assert main([*argv, "--refresh"]) == 0
    # THEN the remembered validators made every request conditional: no body was sent again
    assert ledger.exists() and demo_origin.bytes_sent == before

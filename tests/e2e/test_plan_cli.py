"""``fanfetch plan`` as a user runs it: counts and cost from a given or a sampled per-file time."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from fanfetch.cli.main import main
from fanfetch.core.costmodel import CPU_PER_FILE_S


def _plan(argv: list[str]) -> tuple[int, str]:
    """``fanfetch plan ARGV`` through the real command (``fanfetch.cli.main.main``); return (exit code, stdout)."""
    console = Console(record=True, width=200, file=io.StringIO())
    code = main(["plan", *argv], console=console)
    return code, console.export_text()


def _manifest(tmp_path, origin, groups: int | None = None) -> str:
    stations = origin.stations[:groups] if groups else origin.stations
    lines = [
        {
            "group": str(s.station_id),
            "key": f"stations/{s.station_id}.csv",
            "merge": "csv",
            "urls": [
                origin.url_template.format(station_id=s.station_id, year=y)
                for y in range(s.first_year, s.last_year + 1)
            ],
        }
        for s in stations
    ]
    path = tmp_path / "stations.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_plan_from_a_given_per_file_time_reports_counts_cost_and_wall_time(tmp_path, demo_origin):
    # GIVEN a manifest of 5 groups / 14 files
    manifest = _manifest(tmp_path, demo_origin)
    # WHEN planned at 2 s per file, 2 groups per invocation, 4 files in flight
    code, out = _plan(
        [manifest, "--per-file-s", "2", "--batch-size", "2", "--files-in-flight", "4", "--json"]
    )
    # THEN it answers from the manifest alone: 3 invocations, and cost / wall time follow
    assert code == 0
    plan = json.loads(out)
    assert (plan["groups"], plan["files"], plan["messages"], plan["invocations"]) == (5, 14, 5, 3)
    assert plan["per_file_source"] == "given" and plan["per_file_s"] == 2.0
    assert plan["total_usd"] > 0 and plan["gb_seconds"] > 0
    assert plan["wall_s"] == pytest.approx(plan["invocation_s"])  # 3 invocations fit in the first 5 slots
    assert demo_origin.total_requests == 0


def test_plan_prints_a_readable_table_with_the_prices_date(tmp_path, demo_origin):
    code, out = _plan([_manifest(tmp_path, demo_origin), "--per-file-s", "1.7"])
    assert code == 0
    assert "Lambda invocations" in out and "total cost" in out and "wall time" in out
    assert "Prices: us-east-1" in out


def test_plan_can_measure_the_per_file_time_on_a_sample(tmp_path, demo_origin):
    # GIVEN an allowed loopback origin
    manifest = _manifest(tmp_path, demo_origin)
    # WHEN the per-file time is measured on 3 files
    code, out = _plan([manifest, "--sample", "3", "--allow-host", demo_origin.host_port, "--json"])
    # THEN exactly 3 files were fetched and the estimate rests on their time
    assert code == 0
    plan = json.loads(out)
    assert demo_origin.total_requests == 3
    assert plan["per_file_source"] == "measured on 3 files" and plan["per_file_s"] > 0


def test_sampling_a_host_that_is_not_allowed_fails_without_a_request(tmp_path, demo_origin):
    # GIVEN a loopback origin that is not allow-listed
    manifest = _manifest(tmp_path, demo_origin)
    # WHEN the plan samples it
    code, _ = _plan([manifest, "--sample", "2"])
    # THEN the guard refuses it (exit 1) and the origin saw nothing
    assert code == 1 and demo_origin.total_requests == 0


def test_a_per_file_time_or_a_sample_is_required(tmp_path, demo_origin):
    with pytest.raises(SystemExit) as exited:
        _plan([_manifest(tmp_path, demo_origin)])
    assert exited.value.code == 2


def test_a_bad_manifest_is_an_input_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"group": "a", "urls": ["ftp://x"]}\n')
    code, _ = _plan([str(bad), "--per-file-s", "1"])
    assert code == 2 and f"fanfetch: error: {bad}:1: urls[0]" in capsys.readouterr().err


def test_a_404_in_the_sample_is_reported_and_the_plan_rests_on_the_rest(tmp_path, demo_origin, capsys):
    # GIVEN a manifest whose first URL does not exist at the origin
    ghost = {"group": "ghost", "urls": [demo_origin.url_template.format(station_id=1000, year=1800)]}
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(ghost) + "\n" + open(_manifest(tmp_path, demo_origin)).read())
    # WHEN 3 URLs are sampled
    code, out = _plan([str(path), "--sample", "3", "--allow-host", demo_origin.host_port, "--json"])
    # THEN the 404 is named on stderr and the estimate uses the 2 that worked
    assert code == 0
    assert "404" in capsys.readouterr().err
    assert json.loads(out)["per_file_source"] == "measured on 2 files, 1 failed"


def test_a_fleet_wide_rate_is_shared_and_sets_the_wall_time_when_it_binds(tmp_path, demo_origin):
    # GIVEN 14 files on one host, 1 s each, 50 invocations, and a fleet-wide 0.5 requests/s for that host
    manifest = _manifest(tmp_path, demo_origin)
    code, out = _plan([manifest, "--per-file-s", "1", "--fleet-per-host-rps", "0.5", "--json"])
    plan = json.loads(out)
    # THEN each worker gets 0.5/50 requests/s, and the wall time is the host's: 14 files / 0.5 per second
    assert code == 0
    assert plan["per_host"]["per_worker_rps"] == pytest.approx(0.01)
    assert plan["per_host"]["busiest_host"] == demo_origin.host_port and plan["per_host"]["busiest_host_files"] == 14
    assert plan["wall_s"] == pytest.approx(28.0)
    # AND the table says the per-host bound set it
    code, text = _plan([manifest, "--per-file-s", "1", "--fleet-per-host-rps", "0.5"])
    assert "(set by the per-host bound)" in text and "0.5/s fleet-wide ÷ 50" in text


def test_plan_says_when_the_workers_cpu_share_rather_than_latency_sets_the_pace(tmp_path, demo_origin):
    manifest = _manifest(tmp_path, demo_origin)
    # WHEN a job of fast downloads is planned on small workers
    code, out = _plan([manifest, "--per-file-s", "0.005", "--lambda-memory-mb", "128", "--cpu-per-file-ms", "1"])
    # THEN the table names the CPU as the bound, with the vCPU share and the CPU per file it rests on
    assert code == 0
    assert "bound by CPU: 0.07 vCPU at 128 MB / 1 ms CPU per file" in out
    # AND with slow downloads on the default memory it is the latency
    code, out = _plan([manifest, "--per-file-s", "1.7", "--json"])
    plan = json.loads(out)
    assert plan["cpu_bound"] is False and plan["cpu_per_file_s"] == pytest.approx(CPU_PER_FILE_S)
    assert plan["latency_files_per_s"] == pytest.approx(16 / 1.7)

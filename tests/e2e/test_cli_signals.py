"""``fanfetch run`` under signals, as a separate process: SIGTERM stops cleanly with a summary;
SIGKILL then the same command again gives byte-identical outputs without refetching finished groups."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from fanfetch.cli.demo import expected_station_csv, write_demo_job
from fanfetch.cli.demo_origin import DemoOrigin, demo_stations

pytestmark = pytest.mark.slow
STATIONS = demo_stations(30, seed=7)


def _start(spec: str, dest, origin) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fanfetch.cli.main", "run", spec, "--out", str(dest), "--concurrency", "4",
         "--allow-host", origin.host_port, "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _outputs(dest) -> set[str]:
    """Every output file below dest (the hidden temp folder and the _jobs bookkeeping folder excluded)."""
    return {str(p.relative_to(dest)) for p in dest.rglob("*")
            if p.is_file() and ".fanfetch-tmp" not in p.parts and p.relative_to(dest).parts[0] != "_jobs"}


def _urls_of(station, origin) -> list[str]:
    return [origin.url_template.format(station_id=station.station_id, year=y).split(origin.host_port, 1)[1]
            for y in range(station.first_year, station.last_year + 1)]


@pytest.fixture
def origin():
    with DemoOrigin(STATIONS, latency_s=0.03) as server:
        yield server


def test_sigterm_stops_taking_work_finishes_in_flight_groups_and_summarises(tmp_path, origin):
    # GIVEN a run under way
    spec = write_demo_job(str(tmp_path / "job"), STATIONS, origin.url_template)
    dest = tmp_path / "out"
    process = _start(spec, dest, origin)
    assert origin.wait_for_requests(30)
    # WHEN it gets SIGTERM
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    # THEN it exits 1 with a summary saying it was interrupted, and a results manifest for every group
    assert process.returncode == 1, err
    assert "interrupted" in out
    (results_file,) = list((dest / "_jobs").glob("*/results.jsonl"))
    results = [json.loads(line) for line in results_file.read_text().splitlines()]
    assert len(results) == len(STATIONS)
    ok = {r["group"] for r in results if r["status"] == "ok"}
    assert 0 < len(ok) < len(STATIONS)
    # groups the run never began are "not started", not failures: in the results and in the summary
    not_started = [r for r in results if r["status"] == "not_started"]
    assert len(ok) + len(not_started) == len(STATIONS)
    assert all(r["attempts"] == 0 and "not started" in r["error"] for r in not_started)
    assert f"0 failed, {len(not_started)} not started" in out and "run the same command again" in out
    # AND every stored output is complete; nothing else is visible
    for station in STATIONS:
        path = dest / "stations" / f"{station.station_id}.csv"
        if str(station.station_id) in ok:
            assert path.read_bytes() == expected_station_csv(station)
        else:
            assert not path.exists()


def test_sigkill_then_rerun_is_byte_identical_and_refetches_no_finished_group(tmp_path, origin):
    # GIVEN a run killed with SIGKILL in the middle
    spec = write_demo_job(str(tmp_path / "job"), STATIONS, origin.url_template)
    dest = tmp_path / "out"
    process = _start(spec, dest, origin)
    assert origin.wait_for_requests(150)
    process.kill()
    process.wait(timeout=30)
    visible = _outputs(dest)
    finished = [s for s in STATIONS if f"stations/{s.station_id}.csv" in visible]
    assert visible == {f"stations/{s.station_id}.csv" for s in finished}  # no partial or temp file visible
    for station in finished:
        assert (dest / "stations" / f"{station.station_id}.csv").read_bytes() == expected_station_csv(station)
    before = dict(origin.requests)
    # WHEN the same command runs again to the end
    rerun = _start(spec, dest, origin)
    out, err = rerun.communicate(timeout=120)
    # THEN every output is byte-identical to an uninterrupted run ...
    assert rerun.returncode == 0, err
    for station in STATIONS:
        assert (dest / "stations" / f"{station.station_id}.csv").read_bytes() == expected_station_csv(station)
    # ... and no URL of a group finished before the kill was requested again
    for station in finished:
        assert all(origin.requests[path] == before.get(path, 0) for path in _urls_of(station, origin))
    assert len(finished) >= 1


def test_a_second_sigint_aborts_now_cancelling_transfers_removing_temp_files_and_summarising(tmp_path):
    # GIVEN a run whose every request takes 30 s to answer (so groups in flight would hold it for minutes)
    with DemoOrigin(STATIONS, latency_s=30.0) as slow:
        spec = write_demo_job(str(tmp_path / "job"), STATIONS, slow.url_template)
        dest = tmp_path / "out"
        process = _start(spec, dest, slow)
        assert slow.wait_for_requests(4)
        # WHEN it gets SIGINT, says it is stopping, and gets SIGINT again
        process.send_signal(signal.SIGINT)
        lines = []
        while not any("stopping" in line for line in lines):
            line = process.stdout.readline()
            assert line, "the run ended before it said it was stopping"
            lines.append(line)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)  # far less than one 30 s answer: transfers were cancelled
    out = "".join(lines) + out
    # THEN it exits 1 with a summary saying it aborted, and a results line (failed) for every group
    assert process.returncode == 1, err
    assert "aborted" in out and "interrupted" in out
    (results_file,) = list((dest / "_jobs").glob("*/results.jsonl"))
    results = [json.loads(line) for line in results_file.read_text().splitlines()]
    # groups in flight were cancelled (failed); the ones never begun say so
    assert len(results) == len(STATIONS) and all(r["status"] in ("failed", "not_started") for r in results)
    assert any(r["status"] == "failed" for r in results)
    assert any("cancelled" in r["error"] for r in results)
    # AND no output and no temp file is left behind
    assert _outputs(dest) == set()
    assert not [p for p in (dest / ".fanfetch-tmp").rglob("*") if p.is_file()]

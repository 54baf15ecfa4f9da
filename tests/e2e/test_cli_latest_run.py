"""The local ledger is the latest truth: after re-runs of a job, its validators, hashes, timings and errors are
the last run's; a group stored but not recorded (a crash in between) is counted by the next run; the report
shows the latest run."""

from __future__ import annotations

import hashlib
import json
import sqlite3

from fanfetch.adapters.ledger_sqlite import SqliteLedger, default_ledger_path
from fanfetch.cli.demo import expected_station_csv, write_demo_job
from fanfetch.cli.demo_origin import DemoOrigin, demo_stations
from fanfetch.cli.main import main
from tests.origin_faults import FaultOrigin, sequence, status

STATIONS = demo_stations(5, seed=11)


def _run(spec, dest, *hosts, extra=()) -> int:
    args = ["run", str(spec), "--out", str(dest), "--quiet", *extra]
    for host in hosts:
        args += ["--allow-host", host]
    return main(args)


def _results(dest) -> dict[str, dict]:
    (path,) = list((dest / "_jobs").glob("*/results.jsonl"))
    return {r["group"]: r for r in map(json.loads, path.read_text().splitlines())}


def _ledger(dest):
    ledger = SqliteLedger(default_ledger_path(str(dest)))
    (job_id,) = [p.name for p in (dest / "_jobs").iterdir() if p.is_dir() and p.name[0] not in "_."]  # not _outputs/
    return ledger, job_id


def test_a_file_revised_then_reverted_is_rewritten_both_times_not_kept_by_a_stale_etag(tmp_path):
    with DemoOrigin(STATIONS) as origin:
        # GIVEN a first run, then a refresh after the origin revised one station-year (1 changed)
        spec = write_demo_job(str(tmp_path / "job"), STATIONS, origin.url_template)
        dest = tmp_path / "out"
        assert _run(spec, dest, origin.host_port) == 0
        station = STATIONS[2]
        path = dest / "stations" / f"{station.station_id}.csv"
        original = path.read_bytes()
        origin.revise(station.station_id, station.last_year)
        assert _run(spec, dest, origin.host_port, extra=["--refresh"]) == 0
        assert _results(dest)[str(station.station_id)]["change"] == "changed"
        assert path.read_bytes() == expected_station_csv(station, origin.versions) != original
        # WHEN the origin takes the revision back and the job is refreshed again
        origin.versions.pop((station.station_id, station.last_year))
        assert _run(spec, dest, origin.host_port, extra=["--refresh"]) == 0
        # THEN the output is the origin's current content again (the ETag sent was the revision's, not the first)
        assert _results(dest)[str(station.station_id)]["change"] == "changed"
        assert path.read_bytes() == original
        # AND the ledger remembers the latest hash of every output
        ledger, _ = _ledger(dest)
        sha256, validators = ledger.last_validators(f"stations/{station.station_id}.csv")
        assert sha256 == hashlib.sha256(original).hexdigest() and validators
        ledger.close()


def test_the_ledger_and_report_show_the_latest_run_timings_and_errors(tmp_path):
    faults = FaultOrigin()
    try:
        with DemoOrigin(STATIONS) as origin:
            # GIVEN a job whose "ghost" group fails with 404 the first time and 410 afterwards
            ghost_url = faults.add("/ghost", sequence(status(404), status(410)))
            manifest = tmp_path / "job.jsonl"
            lines = [{"group": str(s.station_id), "key": f"stations/{s.station_id}.csv", "merge": "csv",
                      "urls": [origin.url_template.format(station_id=s.station_id, year=y)
                               for y in range(s.first_year, s.last_year + 1)]} for s in STATIONS]
            lines.append({"group": "ghost", "urls": [ghost_url]})
            manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
            dest = tmp_path / "out"
            hosts = (origin.host_port, f"127.0.0.1:{faults.port}")
            assert _run(manifest, dest, *hosts) == 1
            ledger, job_id = _ledger(dest)
            first = {g.group_id: g for g in ledger.list_groups(job_id)}
            first_job = ledger.get_job(job_id)
            assert "HTTP 404" in first["ghost"].error  # not a bare "404": the origin's port may hold one
            # WHEN the job is run again with --refresh
            assert _run(manifest, dest, *hosts, extra=["--refresh"]) == 1
            # THEN every group's row is the second run's: its timings, its change, the ghost's new error
            latest = {g.group_id: g for g in ledger.list_groups(job_id)}
            assert "HTTP 410" in latest["ghost"].error and "HTTP 404" not in latest["ghost"].error
            for group_id, record in latest.items():
                assert record.started_at > first[group_id].finished_at, group_id
                if group_id != "ghost":
                    assert record.change == "unchanged", group_id
            job = ledger.get_job(job_id)
            assert job.started_at > first_job.started_at
            assert (job.ok, job.failed, job.unchanged) == (5, 1, 5)
            assert job.finished_at is not None and job.finished_at >= max(g.finished_at for g in latest.values())
            ledger.close()
            # AND the report shows the latest error
            assert main(["report", job_id, "--out-dir", str(dest)]) == 0
            page = (dest / "_jobs" / job_id / "report.html").read_text()
            assert "410" in page and "404 " not in page
    finally:
        faults.close()


def test_a_group_stored_but_not_recorded_is_counted_by_the_next_run(tmp_path, monkeypatch):
    with DemoOrigin(STATIONS) as origin:
        # GIVEN a run that stored every group but died before recording one of them in the ledger
        spec = write_demo_job(str(tmp_path / "job"), STATIONS, origin.url_template)
        dest = tmp_path / "out"
        assert _run(spec, dest, origin.host_port) == 0
        ledger, job_id = _ledger(dest)
        lost = str(STATIONS[3].station_id)
        conn = sqlite3.connect(default_ledger_path(str(dest)))
        with conn:
            conn.execute("DELETE FROM groups WHERE group_id = ?", (lost,))
            conn.execute("UPDATE jobs SET ok = ok - 1, files = files - ?, remaining = remaining + 1, "
                         "finished_at = NULL", (STATIONS[3].last_year - STATIONS[3].first_year + 1,))
        conn.close()
        assert (ledger.get_job(job_id).ok, ledger.get_job(job_id).finished_at) == (4, None)
        # WHEN the same command runs again (every output exists: nothing is fetched)
        requests = origin.total_requests
        assert _run(spec, dest, origin.host_port) == 0
        assert origin.total_requests == requests
        # THEN the stored group is counted and the job is finished, 5 of 5
        job = ledger.get_job(job_id)
        assert (job.ok, job.failed, job.finished_at is not None) == (5, 0, True)
        (row,) = [g for g in ledger.list_groups(job_id) if g.group_id == lost]
        assert row.status == "ok" and row.sha256 and row.key == f"stations/{lost}.csv"
        ledger.close()

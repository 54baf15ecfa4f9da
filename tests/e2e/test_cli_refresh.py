"""Incremental runs: ``fanfetch run --refresh`` after the origin revised one file rewrites only that
group, and transfers a small fraction of the first run's bytes (conditional requests, 304s)."""

from __future__ import annotations

import json
import os

from fanfetch.cli.demo import expected_station_csv, write_demo_job
from fanfetch.cli.demo_origin import DemoOrigin, demo_stations
from fanfetch.cli.main import main

STATIONS = demo_stations(12, seed=3)


def _run(spec, dest, origin, *extra) -> int:
    return main(["run", spec, "--out", str(dest), "--allow-host", origin.host_port, "--quiet", *extra])


def test_refresh_rewrites_only_the_changed_group_and_transfers_little(tmp_path):
    with DemoOrigin(STATIONS) as origin:
        # GIVEN a first complete run
        spec = write_demo_job(str(tmp_path / "job"), STATIONS, origin.url_template)
        dest = tmp_path / "out"
        assert _run(spec, dest, origin) == 0
        first_bytes = origin.bytes_sent
        stamps = {s.station_id: os.stat(dest / "stations" / f"{s.station_id}.csv").st_mtime_ns for s in STATIONS}
        # WHEN the origin revises one station-year and the job is refreshed
        changed = STATIONS[4]
        origin.revise(changed.station_id, changed.last_year)
        assert _run(spec, dest, origin, "--refresh") == 0
        second_bytes = origin.bytes_sent - first_bytes
        # THEN only the changed station's output was rewritten, with the revised data ...
        for station in STATIONS:
            path = dest / "stations" / f"{station.station_id}.csv"
            rewritten = os.stat(path).st_mtime_ns != stamps[station.station_id]
            assert rewritten == (station is changed), station
        assert (dest / "stations" / f"{changed.station_id}.csv").read_bytes() == expected_station_csv(
            changed, origin.versions)
        # ... the second run moved at most 10 % of the first run's bytes ...
        assert second_bytes <= 0.10 * first_bytes, (second_bytes, first_bytes)
        # ... and the results say which groups changed
        (results,) = list((dest / "_jobs").glob("*/results.jsonl"))
        changes = {r["group"]: r["change"] for r in map(json.loads, results.read_text().splitlines())}
        assert changes.pop(str(changed.station_id)) == "changed"
        assert set(changes.values()) == {"unchanged"}

"""``fanfetch run`` skips only outputs that carry the current definition's fingerprint; the destination
folder's paths are its own (no link followed, bookkeeping folders reserved); outputs follow the umask."""

from __future__ import annotations

import hashlib
import json
import os

from fanfetch.cli.demo import expected_station_csv
from fanfetch.cli.demo_origin import DemoOrigin, Station, station_year_csv
from fanfetch.cli.main import main

STATION = Station(2000, 2002, 2005)


def _write(path, groups: list[dict]) -> str:
    path.write_text("".join(json.dumps(g) + "\n" for g in groups))
    return str(path)


def _station(origin, first: int, last: int) -> dict:
    urls = [origin.url_template.format(station_id=STATION.station_id, year=y) for y in range(first, last + 1)]
    return {"group": str(STATION.station_id), "key": f"stations/{STATION.station_id}.csv", "merge": "csv",
            "urls": urls}


def _run(manifest: str, dest, origin) -> int:
    return main(["run", manifest, "--out", str(dest), "--allow-host", origin.host_port, "--quiet"])


def _results(dest, manifest_groups_job: str | None = None) -> dict[str, dict]:
    newest = max((dest / "_jobs").glob("*/results.jsonl"), key=os.path.getmtime)
    return {r["group"]: r for r in map(json.loads, newest.read_text().splitlines())}


def test_a_station_extended_by_two_years_is_fetched_again_and_replaced(tmp_path):
    with DemoOrigin([STATION]) as origin:
        dest = tmp_path / "out"
        output = dest / "stations" / f"{STATION.station_id}.csv"
        # GIVEN a station stored for 2002-2003
        assert _run(_write(tmp_path / "m1.jsonl", [_station(origin, 2002, 2003)]), dest, origin) == 0
        assert output.read_bytes() == expected_station_csv(Station(STATION.station_id, 2002, 2003))
        # WHEN the manifest extends it to 2002-2005 and runs again
        before = origin.total_requests
        extended = _write(tmp_path / "m2.jsonl", [_station(origin, 2002, 2005)])
        assert _run(extended, dest, origin) == 0
        # THEN it is not "already stored": all four years are fetched and the file holds 2002-2005
        assert origin.total_requests - before == 4
        assert output.read_bytes() == expected_station_csv(STATION)
        record = _results(dest)[str(STATION.station_id)]
        assert record["status"] == "ok" and not record["skipped"] and record["files"] == 4
        # AND a re-run of the unchanged, extended manifest makes zero requests
        before = origin.total_requests
        assert _run(extended, dest, origin) == 0
        assert origin.total_requests == before and _results(dest)[str(STATION.station_id)]["skipped"]


def test_a_single_file_group_whose_url_and_sha256_changed_is_replaced(tmp_path):
    with DemoOrigin([STATION]) as origin:
        dest = tmp_path / "out"

        def group(year: int) -> dict:
            body = station_year_csv(STATION.station_id, year)
            return {"group": "one", "key": "one.csv", "merge": "concat",
                    "urls": [{"url": origin.url_template.format(station_id=STATION.station_id, year=year),
                              "sha256": hashlib.sha256(body).hexdigest()}]}

        # GIVEN the group stored from 2002's file
        assert _run(_write(tmp_path / "m1.jsonl", [group(2002)]), dest, origin) == 0
        # WHEN its URL and sha256 change to 2003's
        assert _run(_write(tmp_path / "m2.jsonl", [group(2003)]), dest, origin) == 0
        # THEN the new bytes are stored, not skipped
        assert (dest / "one.csv").read_bytes() == station_year_csv(STATION.station_id, 2003)
        assert not _results(dest)["one"]["skipped"]


def test_a_file_fanfetch_did_not_write_at_a_key_is_replaced_never_counted_done(tmp_path):
    with DemoOrigin([STATION]) as origin:
        # GIVEN a file of the user's at the output key
        dest = tmp_path / "out"
        output = dest / "stations" / f"{STATION.station_id}.csv"
        output.parent.mkdir(parents=True)
        output.write_bytes(b"someone else's file\n")
        # WHEN the job runs
        assert _run(_write(tmp_path / "m.jsonl", [_station(origin, 2002, 2005)]), dest, origin) == 0
        # THEN the group is fetched and the file replaced with its output
        assert output.read_bytes() == expected_station_csv(STATION)
        assert not _results(dest)[str(STATION.station_id)]["skipped"]


def test_a_symlink_planted_at_an_output_path_is_replaced_and_its_target_untouched(tmp_path):
    with DemoOrigin([STATION]) as origin:
        # GIVEN a link at the output path to a file outside the destination
        outside = tmp_path / "outside.csv"
        outside.write_bytes(b"not yours\n")
        dest = tmp_path / "out"
        (dest / "stations").mkdir(parents=True)
        output = dest / "stations" / f"{STATION.station_id}.csv"
        output.symlink_to(outside)
        # WHEN the job runs
        assert _run(_write(tmp_path / "m.jsonl", [_station(origin, 2002, 2005)]), dest, origin) == 0
        # THEN the group is not "ok, skipped" with the outside file's hash: the link became the real output
        record = _results(dest)[str(STATION.station_id)]
        assert not record["skipped"] and record["sha256"] == hashlib.sha256(expected_station_csv(STATION)).hexdigest()
        assert not output.is_symlink() and output.read_bytes() == expected_station_csv(STATION)
        assert outside.read_bytes() == b"not yours\n"


def test_a_symlinked_folder_fails_the_group_with_a_reason_and_nothing_is_written_outside(tmp_path):
    with DemoOrigin([STATION]) as origin:
        # GIVEN DEST/stations is a link to a folder elsewhere
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        dest = tmp_path / "out"
        dest.mkdir()
        (dest / "stations").symlink_to(elsewhere, target_is_directory=True)
        # WHEN the job runs
        code = _run(_write(tmp_path / "m.jsonl", [_station(origin, 2002, 2005)]), dest, origin)
        # THEN the group fails naming the link, before any download, and nothing lands outside DEST
        record = _results(dest)[str(STATION.station_id)]
        assert code == 1 and record["status"] == "failed" and "symbolic link" in record["error"]
        assert origin.total_requests == 0 and list(elsewhere.iterdir()) == []


def test_outputs_and_results_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with DemoOrigin([STATION]) as origin:
            dest = tmp_path / "out"
            assert _run(_write(tmp_path / "m.jsonl", [_station(origin, 2002, 2005)]), dest, origin) == 0
    finally:
        os.umask(old)
    (results,) = (dest / "_jobs").glob("*/results.jsonl")
    assert os.stat(dest / "stations" / f"{STATION.station_id}.csv").st_mode & 0o777 == 0o644
    assert os.stat(results).st_mode & 0o777 == 0o644


def test_a_reserved_key_is_refused_at_validation_with_one_line(tmp_path, capsys):
    # GIVEN a key inside fanfetch's bookkeeping folder (today: "ok" with the ledger's own hash)
    manifest = _write(tmp_path / "m.jsonl", [{"group": "g", "urls": ["https://h.example/1"],
                                              "key": "_jobs/ledger.sqlite"}])
    dest = tmp_path / "out"
    # WHEN it is run / THEN exit 2, one line naming file, line and field; nothing written
    assert main(["run", manifest, "--out", str(dest), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fanfetch: error: {manifest}:1: key: output key '_jobs/ledger.sqlite' lies in _jobs/")
    assert "\n" not in err and not dest.exists()

"""``fanfetch run --on-missing`` and ``on_missing`` in manifests, as a user runs them: a station with a
year the origin does not have (404) is stored from the years it has, and the results name the gap."""

from __future__ import annotations

import json

import pytest

from fanfetch.adapters.ledger_sqlite import SqliteLedger, default_ledger_path
from fanfetch.cli.demo import expected_station_csv
from fanfetch.cli.main import main


def _write(tmp_path, origin, groups: list[dict]) -> str:
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(g) + "\n" for g in groups))
    return str(path)


def _station_1000(origin, *, extra_years=(1800,), **fields) -> dict:
    years = [2000, *extra_years, 2001, 2002]
    return {"group": "1000", "key": "stations/1000.csv", "merge": "csv",
            "urls": [origin.url_template.format(station_id=1000, year=y) for y in years], **fields}


def _results(dest) -> dict[str, dict]:
    (path,) = list((dest / "_jobs").glob("*/results.jsonl"))
    return {r["group"]: r for r in map(json.loads, path.read_text().splitlines())}


def _run(manifest, dest, origin, *flags) -> int:
    return main(["run", manifest, "--out", str(dest), "--allow-host", origin.host_port, "--quiet", *flags])


def test_on_missing_skip_stores_the_station_from_its_years_and_names_the_missing_url(tmp_path, demo_origin):
    # GIVEN station 1000 (2000-2002) listed with a year the origin answers 404 for
    manifest = _write(tmp_path, demo_origin, [_station_1000(demo_origin)])
    dest = tmp_path / "out"
    # WHEN run with --on-missing skip
    code = _run(manifest, dest, demo_origin, "--on-missing", "skip")
    # THEN exit 0, the station holds exactly its real years, and results.jsonl and the ledger name the gap
    assert code == 0
    station = next(s for s in demo_origin.stations if s.station_id == 1000)
    assert (dest / "stations/1000.csv").read_bytes() == expected_station_csv(station)
    gone = demo_origin.url_template.format(station_id=1000, year=1800)
    record = _results(dest)["1000"]
    assert record["status"] == "ok" and record["missing"] == [gone] and record["files"] == 3
    ledger = SqliteLedger(default_ledger_path(str(dest)))
    try:
        (verdict,) = ledger.list_groups(next(iter((dest / "_jobs").glob("*/results.jsonl"))).parent.name)
        assert verdict.status == "ok" and verdict.missing == (gone,)
    finally:
        ledger.close()


def test_the_default_still_fails_the_group_and_a_group_can_choose_skip_itself(tmp_path, demo_origin):
    # GIVEN the same station twice: once without a policy, once naming on_missing=skip itself
    plain = _station_1000(demo_origin)
    chosen = _station_1000(demo_origin, group="1000b", key="stations/1000b.csv", on_missing="skip")
    manifest = _write(tmp_path, demo_origin, [plain, chosen])
    dest = tmp_path / "out"
    # WHEN run without --on-missing
    code = _run(manifest, dest, demo_origin)
    # THEN the plain group fails on the 404 (exit 1), the one that chose skip is stored
    results = _results(dest)
    assert code == 1 and results["1000"]["status"] == "failed" and "404" in results["1000"]["error"]
    assert results["1000b"]["status"] == "ok" and len(results["1000b"]["missing"]) == 1


def test_a_group_whose_every_year_is_missing_fails_even_with_skip(tmp_path, demo_origin):
    ghost = {"group": "ghost", "urls": [demo_origin.url_template.format(station_id=1000, year=y) for y in (1800, 1801)]}
    dest = tmp_path / "out"
    code = _run(_write(tmp_path, demo_origin, [ghost]), dest, demo_origin, "--on-missing", "skip")
    record = _results(dest)["ghost"]
    assert code == 1 and record["status"] == "failed" and "every file of the group is missing" in record["error"]


def test_a_job_spec_can_set_on_missing_for_all_its_groups(tmp_path, demo_origin):
    # GIVEN a spec expanding station 1000 over 1999-2002 (1999 does not exist) with on_missing = "skip"
    spec = tmp_path / "job.toml"
    spec.write_text(
        "[job]\n"
        f'url = "{demo_origin.url_template}"\n'
        'group = "{station_id}"\nkey = "stations/{station_id}.csv"\nmerge = "csv"\non_missing = "skip"\n'
        '[table]\nrows = [{station_id = 1000}]\n[expand]\nyear = {from = 1999, to = 2002}\n'
    )
    dest = tmp_path / "out"
    code = _run(str(spec), dest, demo_origin)
    assert code == 0 and _results(dest)["1000"]["missing"] == [
        demo_origin.url_template.format(station_id=1000, year=1999)]


def test_a_bad_on_missing_value_is_one_line_naming_file_line_and_field(tmp_path, demo_origin, capsys):
    manifest = _write(tmp_path, demo_origin, [_station_1000(demo_origin, on_missing="ignore")])
    code = _run(manifest, tmp_path / "out", demo_origin)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "m.jsonl:1: on_missing" in err and "fail" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as usage:  # argparse: exit 2 with the usage line
        main(["run", manifest, "--out", str(tmp_path / "o"), "--on-missing", "maybe"])
    assert usage.value.code == 2 and "invalid choice: 'maybe'" in capsys.readouterr().err

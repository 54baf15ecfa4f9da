"""``fanfetch run`` with a streamed manifest: from stdin, results in manifest order, a re-run skipping stored groups
(the ledger's stored groups held as hashes), and a bad manifest on stdin refused before any request."""

from __future__ import annotations

import io
import json
import sqlite3
import sys
from types import SimpleNamespace

from fanfetch.cli.demo import expected_station_csv
from fanfetch.cli.main import main


def _stdin(monkeypatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(text.encode())))


def _manifest(origin) -> str:
    template = origin.url_template
    # reversed: manifest order differs from group id order, so the results' order is the manifest's
    return "".join(json.dumps({"group": str(s.station_id), "key": f"stations/{s.station_id}.csv",
                               "urls": [template.format(station_id=s.station_id, year=y)
                                        for y in range(s.first_year, s.last_year + 1)]}) + "\n"
                   for s in reversed(origin.stations))


def test_a_manifest_on_stdin_runs_lists_results_in_manifest_order_and_resumes(tmp_path, demo_origin, monkeypatch,
                                                                                 capsys):
    # GIVEN the origin's stations as a manifest on stdin
    dest = tmp_path / "out"
    argv = ["run", "-", "--out", str(dest), "--merge", "csv", "--allow-host", demo_origin.host_port, "--quiet"]
    _stdin(monkeypatch, _manifest(demo_origin))
    # WHEN it is run
    assert main(argv) == 0
    # THEN every station is stored byte-exact, and the results list the groups in manifest order
    for station in demo_origin.stations:
        assert (dest / "stations" / f"{station.station_id}.csv").read_bytes() == expected_station_csv(station)
    (results,) = list((dest / "_jobs").glob("*/results.jsonl"))
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["group"] for r in lines] == [str(s.station_id) for s in reversed(demo_origin.stations)]
    assert all(r["status"] == "ok" for r in lines)
    requests = demo_origin.total_requests
    # AND the same manifest again skips every stored group without a request, the ledger's verdicts left alone
    ledger = dest / "_jobs" / "ledger.sqlite"
    before = sqlite3.connect(ledger).execute("SELECT group_id, finished_at FROM groups ORDER BY 1").fetchall()
    _stdin(monkeypatch, _manifest(demo_origin))
    capsys.readouterr()
    assert main(argv) == 0
    assert demo_origin.total_requests == requests
    assert f"{len(demo_origin.stations)} ok ({len(demo_origin.stations)} already stored)" in capsys.readouterr().out
    assert sqlite3.connect(ledger).execute("SELECT group_id, finished_at FROM groups ORDER BY 1").fetchall() == before


def test_a_bad_manifest_on_stdin_exits_2_naming_stdin_before_any_request(tmp_path, demo_origin, monkeypatch, capsys):
    good = _manifest(demo_origin)
    _stdin(monkeypatch, good + good.splitlines(keepends=True)[0])  # the first group again
    code = main(["run", "-", "--out", str(tmp_path / "out"), "--allow-host", demo_origin.host_port, "--quiet"])
    assert code == 2 and demo_origin.total_requests == 0
    line = len(demo_origin.stations) + 1
    assert f"fanfetch: error: stdin:{line}: group: duplicate group id" in capsys.readouterr().err

"""Secrets never leave the request, as a user runs fanfetch: URLs with a password and a presigned
signature fail (404) or go missing, and no console line, results.jsonl, failure text, SQLite ledger or
report.html holds the secret (each sink read back byte for byte)."""

from __future__ import annotations

import json

from fanfetch.cli.main import main

SECRETS = ("SECRETPW", "SECRETSIG", "SECRETCRED", "SECRETTOK", "SECRETKEY")


def _signed(origin, station: int, year: int, *, password: bool) -> str:
    url = origin.url_template.format(station_id=station, year=year)
    url += "&X-Amz-Credential=SECRETCRED&X-Amz-Signature=SECRETSIG&token=SECRETTOK&api_key=SECRETKEY"
    return url.replace("http://", "http://alice:SECRETPW@") if password else url


def test_no_sink_of_a_local_run_holds_a_url_secret(tmp_path, demo_origin, capsys, monkeypatch):
    # GIVEN api_key configured as secret too, one group failing on a 404 and one skipping a missing year,
    # every URL carrying a password and presigned-style secrets
    monkeypatch.setenv("FANFETCH_REDACT_PARAMS", "api_key")
    failing = {"group": "ghost", "urls": [_signed(demo_origin, 1000, 1800, password=True)]}
    skipping = {"group": "1000", "merge": "csv", "on_missing": "skip",
                "urls": [_signed(demo_origin, 1000, y, password=y == 1801) for y in (2000, 1801, 2001)]}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(failing) + "\n" + json.dumps(skipping) + "\n")
    dest = tmp_path / "out"
    # WHEN run (and the report written from its ledger)
    code = main(["run", str(manifest), "--out", str(dest), "--allow-host", demo_origin.host_port])
    (results,) = list((dest / "_jobs").glob("*/results.jsonl"))
    job_id = results.parent.name
    assert main(["report", job_id, "--out-dir", str(dest)]) == 0
    console = capsys.readouterr()
    # THEN the run did what it should (exit 1: ghost failed; 1000 stored without its missing year)
    records = {r["group"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert code == 1 and records["ghost"]["status"] == "failed" and records["1000"]["status"] == "ok"
    assert "404" in records["ghost"]["error"] and "REDACTED" in records["ghost"]["error"]
    assert records["1000"]["missing"] and "REDACTED@" in records["1000"]["missing"][0]
    # AND no secret is in the console, in any file fanfetch wrote (results, ledger, report, summary, outputs)
    for secret in SECRETS:
        assert secret not in console.out and secret not in console.err
    written = [p for p in dest.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in written) and any(p.name == "ledger.sqlite" for p in written)
    for path in written:
        data = path.read_bytes()
        assert not [s for s in SECRETS if s.encode() in data], path

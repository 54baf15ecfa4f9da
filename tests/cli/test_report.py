"""``fanfetch report`` on a local run: reading its results (or its SQLite ledger while it runs) and writing the page."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from fanfetch.cli.main import main
from fanfetch.cli.report import load_local_run
from tests.ledger_records import T0, group_record


def _write_results(dest: Path, job_id: str, lines: list[dict[str, object]]) -> Path:
    folder = dest / "_jobs" / job_id
    folder.mkdir(parents=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def _line(group: str, *, status: str = "ok", times: bool = True, skipped: bool = False) -> dict[str, object]:
    line: dict[str, object] = {"group": group, "status": status, "key": f"{group}.csv", "files": 2,
                               "bytes": 0 if status != "ok" else 20, "sha256": None, "attempts": 3,
                               "error": None if status == "ok" else "HTTP 404", "skipped": skipped}
    if times:
        line |= {"started_at": T0, "finished_at": T0 + 2}
    return line


def _report(argv: list[str]) -> tuple[int, str]:
    """``fanfetch report ARGV`` through the real command (``fanfetch.cli.main.main``): (exit code, stdout)."""
    out = io.StringIO()
    code = main(["report", *argv], console=Console(file=out, width=300))
    return code, out.getvalue()


def test_local_results_become_job_and_group_records(tmp_path: Path) -> None:
    # GIVEN a finished run: one fetched, one skipped (already stored), one failed
    folder = _write_results(tmp_path, "job1", [_line("a"), _line("b", skipped=True), _line("c", status="failed")])
    # WHEN loaded
    job, groups, source = load_local_run(str(folder))
    # THEN the totals count every group and only fetched files, and times come from the lines
    assert (job.total_groups, job.ok, job.failed, job.files, job.bytes) == (3, 2, 1, 2, 20)
    assert job.started_at == T0 and job.finished_at == T0 + 2 and job.finished
    assert [g.attempts for g in groups] == [3, 0, 3]
    assert source.endswith("results.jsonl")


def test_report_command_writes_the_page_beside_the_results(tmp_path: Path) -> None:
    # GIVEN a local run without timestamps (written before they existed)
    folder = _write_results(tmp_path, "abcdef123", [_line("a", times=False), _line("b", status="failed", times=False)])
    # WHEN `fanfetch report abc --out-dir DEST` (a unique prefix of the job id)
    code, out = _report(["abc", "--out-dir", str(tmp_path)])
    # THEN the page is written in the job's folder, without a chart, and its path printed
    page = (folder / "report.html").read_text()
    assert code == 0 and str(folder / "report.html") in out and "1 failed" in out
    assert "carry no timestamps" in page and "HTTP 404" in page


def test_report_command_html_flag_chooses_the_file(tmp_path: Path) -> None:
    _write_results(tmp_path, "job1", [_line("a")])
    target = tmp_path / "elsewhere" / "r.html"
    assert _report(["job1", "--out-dir", str(tmp_path), "--html", str(target)])[0] == 0
    assert "<svg" in target.read_text()


def test_unknown_job_is_an_input_error_listing_the_jobs_there(tmp_path: Path, capsys) -> None:
    _write_results(tmp_path, "job1", [_line("a")])
    assert _report(["nope", "--out-dir", str(tmp_path)])[0] == 2
    assert re.search(r"'nope' is not a job here .*jobs: job1", capsys.readouterr().err)
    assert _report(["job1", "--out-dir", str(tmp_path / "empty")])[0] == 2
    assert "no fanfetch runs here" in capsys.readouterr().err


def test_corrupt_results_line_is_an_input_error_naming_file_and_line(tmp_path: Path, capsys) -> None:
    folder = _write_results(tmp_path, "job1", [_line("a")])
    with (folder / "results.jsonl").open("a") as handle:
        handle.write("{not json\n")
    assert _report(["job1", "--out-dir", str(tmp_path)])[0] == 2
    assert re.search(r"results\.jsonl:2: not JSON", capsys.readouterr().err)


def test_local_run_in_progress_is_reported_from_its_sqlite_ledger(tmp_path: Path) -> None:
    # GIVEN a local run still going: its ledger knows 2 of 4 verdicts, no results.jsonl yet
    from fanfetch.adapters.ledger_sqlite import SqliteLedger, default_ledger_path

    ledger = SqliteLedger(default_ledger_path(str(tmp_path)))
    ledger.open_job("job9", total_groups=4, total_files=8, results_location="", now=T0)
    ledger.record_group(replace(group_record("a", 1.0), job_id="job9"))
    ledger.record_group(replace(group_record("b", 2.0, status="failed", error="HTTP 410 <gone>"), job_id="job9"))
    ledger.close()

    # WHEN `fanfetch report job9 --out-dir DEST --html FILE`
    target = tmp_path / "r.html"
    code, out = _report(["job9", "--out-dir", str(tmp_path), "--html", str(target)])

    # THEN the page comes from the ledger: in progress, 2 pending, the failure listed and escaped
    page = target.read_text()
    assert code == 0 and "2/4 groups" in out
    assert "in progress" in page and "2 pending" in page
    assert "HTTP 410 &lt;gone&gt;" in page
    assert "ledger.sqlite" in page

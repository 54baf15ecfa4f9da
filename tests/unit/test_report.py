"""The job report page: bucketing math, escaping, and the pages for empty and timestamp-less jobs,
plus reading a local run's results for ``fanfetch report``."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from fanfetch.app.report import render_report
from fanfetch.app.throughput import bucket_throughput, nice_bucket_s
from fanfetch.cli.main import main
from fanfetch.cli.report import load_local_run
from fanfetch.core.ledger import GroupRecord, JobRecord

T0 = 1_700_000_000.0


def _group(group_id: str, finished_s: float | None, *, status: str = "ok", files: int = 2, size: int = 100,
           attempts: int | None = None, error: str | None = None, started_s: float | None = None) -> GroupRecord:
    return GroupRecord(
        job_id="job", group_id=group_id, status=status, key=f"out/{group_id}.csv", files=files,
        bytes=size if status == "ok" else 0, attempts=files if attempts is None else attempts, error=error,
        started_at=0.0 if started_s is None else T0 + started_s,
        finished_at=0.0 if finished_s is None else T0 + finished_s,
    )


def _job(groups: list[GroupRecord], *, total: int | None = None, started_s: float | None = 0.0) -> JobRecord:
    ok = [g for g in groups if g.status == "ok"]
    return JobRecord(job_id="job", total_groups=len(groups) if total is None else total,
                     total_files=sum(g.files for g in groups), ok=len(ok), failed=len(groups) - len(ok),
                     files=sum(g.files for g in ok), bytes=sum(g.bytes for g in ok),
                     started_at=0.0 if started_s is None else T0 + started_s)


# --- bucketing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("span_s", "width_s"), [
    (0, 0.1), (5, 0.1), (6.5, 0.2), (60, 1), (61, 2), (3600, 60), (3601, 120), (86400, 1800),
    (30 * 86400, 43200), (90 * 86400, 2 * 86400),
])
def test_bucket_width_is_a_readable_step_giving_at_most_60_bars(span_s: float, width_s: float) -> None:
    # GIVEN a job span WHEN choosing the bucket width THEN it is the smallest nice step that fits 60 bars
    assert nice_bucket_s(span_s) == width_s
    assert span_s / width_s <= 60


def test_completions_land_in_the_bucket_of_their_finish_time() -> None:
    # GIVEN a job started at T0 whose groups finish at 0.5 s, 1.5 s (two), 59.5 s and exactly 60 s;
    # one of them failed and one was already stored (no request: skipped)
    groups = [
        _group("a", 0.5, files=3, size=300),
        _group("b", 1.5, files=1, size=10),
        _group("c", 1.5, status="failed", files=4, error="503"),
        _group("d", 59.5, files=2, size=20),
        _group("e", 60.0, files=5, size=50),
        _group("skipped", 30.2, files=7, size=70, attempts=0),
    ]

    # WHEN bucketing from the job's start
    throughput = bucket_throughput(groups, started_at=T0)

    # THEN there are 60 one-second buckets; files and bytes count stored groups only, failures are
    # counted separately, the skipped group fetched nothing, and the last instant joins the last bucket
    assert throughput is not None
    assert (throughput.origin, throughput.bucket_s, len(throughput.buckets)) == (T0, 1.0, 60)
    b = throughput.buckets
    assert (b[0].files, b[0].bytes, b[0].ok, b[0].failed) == (3, 300, 1, 0)
    assert (b[1].files, b[1].bytes, b[1].ok, b[1].failed) == (1, 10, 1, 1)
    assert (b[30].files, b[30].ok) == (0, 0)
    assert (b[59].files, b[59].bytes, b[59].ok) == (7, 70, 2)
    assert [x.start_s for x in b[:3]] == [0.0, 1.0, 2.0]
    assert throughput.total_files == 11
    assert throughput.untimed == 0


def test_origin_is_the_earliest_start_even_before_the_job_record_says() -> None:
    # GIVEN a group that started 10 s before the job's recorded start and finished 20 s after it
    groups = [_group("a", 20.0, started_s=-10.0)]
    # WHEN bucketing THEN the chart starts at that group's start and spans 30 s
    throughput = bucket_throughput(groups, started_at=T0)
    assert throughput is not None
    assert throughput.origin == T0 - 10.0
    assert throughput.span_s == 30.0
    assert throughput.buckets[-1].files == 2


def test_groups_without_timestamps_are_counted_as_untimed_and_none_timed_means_no_chart() -> None:
    # GIVEN one group with a finish time and one without
    mixed = bucket_throughput([_group("a", 1.0), _group("b", None)])
    # THEN the timed one is bucketed and the other reported as untimed
    assert mixed is not None and mixed.untimed == 1 and mixed.total_files == 2
    # AND with no timestamps at all there is nothing to chart
    assert bucket_throughput([_group("a", None), _group("b", None)]) is None
    assert bucket_throughput([]) is None


# --- the page -------------------------------------------------------------------------------------

HOSTILE = '</td><script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


def test_every_recorded_string_is_escaped() -> None:
    # GIVEN failed groups whose id, key and error carry markup
    bad = GroupRecord(job_id='j"><script>', group_id=f"g{HOSTILE}", status="failed", key=f"k/{HOSTILE}",
                      files=1, attempts=3, error=f"HTTP 500 {HOSTILE}", finished_at=T0 + 1)
    job = JobRecord(job_id='j"><script>alert(0)</script>', total_groups=1, total_files=1, failed=1, started_at=T0)

    # WHEN rendering
    page = render_report(job, [bad], source=f"/tmp/{HOSTILE}")

    # THEN no markup from the records survives: no script or img element, and the text is shown escaped
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&amp;amp;" in page  # an entity in the data is shown literally, not decoded
    assert page.count("<tr>") == 2  # the header row and the one failure: the hostile </td> opened nothing


def test_page_is_self_contained() -> None:
    # GIVEN a job with a chart and a failure WHEN rendered
    groups = [_group(str(i), float(i)) for i in range(10)] + [_group("x", 5.0, status="failed", error="boom")]
    page = render_report(_job(groups), groups)
    # THEN nothing is loaded from elsewhere: no src/href attributes, no CSS imports or url(), no scripts
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "@import" not in page and "url(" not in page and "<script" not in page
    assert "default-src 'none'" in page


def test_chart_has_one_bar_per_bucket_and_a_marker_per_failing_bucket() -> None:
    # GIVEN 120 groups over 60 s with failures in two different seconds
    groups = [_group(f"g{i}", (i + 1) * 0.5) for i in range(120)]
    groups[10] = _group("f1", 5.5, status="failed", error="e")
    groups[11] = _group("f2", 5.6, status="failed", error="e")
    groups[80] = _group("f3", 40.5, status="failed", error="e")
    # WHEN rendered
    page = render_report(_job(groups), groups)
    # THEN 60 bars, one cumulative line, two failure markers, and a three-row failures table
    assert page.count('<rect class="bar"') == 60
    assert page.count('class="cumulative"') == 1
    assert page.count('class="fail-mark"') == 2
    table = page[page.index('<table id="failures"'):]
    assert table.count("<tr>") == 1 + 3


def test_empty_job_renders_without_a_chart_or_failures() -> None:
    # GIVEN a job with no groups recorded yet
    job = JobRecord(job_id="fresh", total_groups=0, total_files=0)
    # WHEN rendered THEN the page says so instead of failing on empty data
    page = render_report(job, [])
    assert "<svg" not in page
    assert "No group has finished yet." in page
    assert "No group failed." in page
    assert "in progress" in page


def test_job_without_timestamps_gets_a_note_instead_of_a_chart() -> None:
    # GIVEN results written by a fanfetch that did not record times
    groups = [_group("a", None), _group("b", None, status="failed", error="timeout")]
    # WHEN rendered THEN the summary and failures are there, the chart is replaced by a note
    page = render_report(_job(groups, started_s=None), groups)
    assert "<svg" not in page
    assert "carry no timestamps" in page
    assert '<table id="failures"' in page and "timeout" in page


def test_running_job_shows_pending_groups() -> None:
    # GIVEN 2 of 5 groups done
    groups = [_group("a", 1.0), _group("b", 2.0)]
    page = render_report(_job(groups, total=5), groups)
    # THEN the page says it is in progress with 3 pending
    assert "in progress" in page and "3 pending" in page


# --- fanfetch report on a local run ---------------------------------------------------------------


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
    ledger.record_group(replace(_group("a", 1.0), job_id="job9"))
    ledger.record_group(replace(_group("b", 2.0, status="failed", error="HTTP 410 <gone>"), job_id="job9"))
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


def test_a_rerun_job_charts_its_latest_run_and_counts_groups_settled_earlier() -> None:
    # GIVEN a job whose latest run started at T0 + 3600 s; one group's verdict is from the first run (T0 + 5 s)
    groups = [_group("old", 5.0, started_s=1.0), _group("new", 3605.0, started_s=3601.0, files=3)]
    # WHEN bucketing from the latest start
    throughput = bucket_throughput(groups, started_at=T0 + 3600)
    # THEN the chart spans the latest run only and says one group was settled by an earlier run
    assert throughput is not None and throughput.origin == T0 + 3600 and throughput.span_s < 60
    assert throughput.total_files == 3 and throughput.earlier == 1
    page = render_report(_job(groups, started_s=3600.0), groups)
    assert "1 group(s) were settled by an earlier run" in page
    # AND a latest run that settled nothing new still charts what the ledger has
    again = bucket_throughput(groups, started_at=T0 + 7200)
    assert again is not None and again.total_files == 5 and again.earlier == 0

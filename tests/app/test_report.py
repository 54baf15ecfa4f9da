"""The job report page: escaping, a self-contained page, the chart, and the pages for empty, running,
timestamp-less and re-run jobs."""

from __future__ import annotations

import re

from fanfetch.app.report import render_report
from fanfetch.app.throughput import bucket_throughput
from fanfetch.core.ledger import GroupRecord, JobRecord
from tests.ledger_records import T0, group_record, job_record

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
    groups = [group_record(str(i), float(i)) for i in range(10)]
    groups.append(group_record("x", 5.0, status="failed", error="boom"))
    page = render_report(job_record(groups), groups)
    # THEN nothing is loaded from elsewhere: no src/href attributes, no CSS imports or url(), no scripts
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "@import" not in page and "url(" not in page and "<script" not in page
    assert "default-src 'none'" in page


def test_chart_has_one_bar_per_bucket_and_a_marker_per_failing_bucket() -> None:
    # GIVEN 120 groups over 60 s with failures in two different seconds
    groups = [group_record(f"g{i}", (i + 1) * 0.5) for i in range(120)]
    groups[10] = group_record("f1", 5.5, status="failed", error="e")
    groups[11] = group_record("f2", 5.6, status="failed", error="e")
    groups[80] = group_record("f3", 40.5, status="failed", error="e")
    # WHEN rendered
    page = render_report(job_record(groups), groups)
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
    groups = [group_record("a", None), group_record("b", None, status="failed", error="timeout")]
    # WHEN rendered THEN the summary and failures are there, the chart is replaced by a note
    page = render_report(job_record(groups, started_s=None), groups)
    assert "<svg" not in page
    assert "carry no timestamps" in page
    assert '<table id="failures"' in page and "timeout" in page


def test_running_job_shows_pending_groups() -> None:
    # GIVEN 2 of 5 groups done
    groups = [group_record("a", 1.0), group_record("b", 2.0)]
    page = render_report(job_record(groups, total=5), groups)
    # THEN the page says it is in progress with 3 pending
    assert "in progress" in page and "3 pending" in page



def test_a_rerun_job_charts_its_latest_run_and_counts_groups_settled_earlier() -> None:
    # GIVEN a job whose latest run started at T0 + 3600 s; one group's verdict is from the first run (T0 + 5 s)
    groups = [group_record("old", 5.0, started_s=1.0), group_record("new", 3605.0, started_s=3601.0, files=3)]
    # WHEN bucketing from the latest start
    throughput = bucket_throughput(groups, started_at=T0 + 3600)
    # THEN the chart spans the latest run only and says one group was settled by an earlier run
    assert throughput is not None and throughput.origin == T0 + 3600 and throughput.span_s < 60
    assert throughput.total_files == 3 and throughput.earlier == 1
    page = render_report(job_record(groups, started_s=3600.0), groups)
    assert "1 group(s) were settled by an earlier run" in page
    # AND a latest run that settled nothing new still charts what the ledger has
    again = bucket_throughput(groups, started_at=T0 + 7200)
    assert again is not None and again.total_files == 5 and again.earlier == 0

"""Throughput bucketing: a readable bucket width, completions in the bucket of their finish time, untimed groups."""

from __future__ import annotations

import pytest

from fanfetch.app.throughput import bucket_throughput, nice_bucket_s
from tests.ledger_records import T0, group_record


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
        group_record("a", 0.5, files=3, size=300),
        group_record("b", 1.5, files=1, size=10),
        group_record("c", 1.5, status="failed", files=4, error="503"),
        group_record("d", 59.5, files=2, size=20),
        group_record("e", 60.0, files=5, size=50),
        group_record("skipped", 30.2, files=7, size=70, attempts=0),
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
    groups = [group_record("a", 20.0, started_s=-10.0)]
    # WHEN bucketing THEN the chart starts at that group's start and spans 30 s
    throughput = bucket_throughput(groups, started_at=T0)
    assert throughput is not None
    assert throughput.origin == T0 - 10.0
    assert throughput.span_s == 30.0
    assert throughput.buckets[-1].files == 2


def test_groups_without_timestamps_are_counted_as_untimed_and_none_timed_means_no_chart() -> None:
    # GIVEN one group with a finish time and one without
    mixed = bucket_throughput([group_record("a", 1.0), group_record("b", None)])
    # THEN the timed one is bucketed and the other reported as untimed
    assert mixed is not None and mixed.untimed == 1 and mixed.total_files == 2
    # AND with no timestamps at all there is nothing to chart
    assert bucket_throughput([group_record("a", None), group_record("b", None)]) is None
    assert bucket_throughput([]) is None

"""The DynamoDB ledger under contention as real DynamoDB has it (the conflict double): 16 writers, exact counts,
exactly one finish, and few conflicts — side by side with the same ledger squeezed onto one counter item."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.core.ledger import GroupRecord
from fanfetch.errors import RetryableLedgerError
from tests.doubles.dynamodb_conflicts import serve_dynamodb_conflicts

WRITERS = 16


def _verdict(job: str, i: int) -> GroupRecord:
    return GroupRecord(job_id=job, group_id=f"g{i:05d}", status="ok" if i % 7 else "failed", key=f"out/{i}.csv",
                       files=3, bytes=100 + i, sha256=f"{i:064x}", attempts=1, finished_at=1000.0 + i)


def _race(ledger: DynamoDBLedger, job: str, groups: int) -> tuple[list[Any], int]:
    """Every group once plus every 10th twice, shuffled, recorded by 16 threads released together."""
    ledger.open_job(job, total_groups=groups, total_files=3 * groups, results_location="", now=1.0,
                    group_ids=[f"g{i:05d}" for i in range(groups)])
    deliveries = [_verdict(job, i) for i in range(groups)] + [_verdict(job, i) for i in range(0, groups, 10)]
    random.Random(7).shuffle(deliveries)
    start = threading.Barrier(WRITERS)
    gave_up = [0]

    def writer(share: list[GroupRecord]) -> list[Any]:
        start.wait()
        outcomes = []
        for record in share:
            while True:  # as the worker does: a verdict not counted comes back and is recorded again
                try:
                    outcomes.append(ledger.record_group(record))
                    break
                except RetryableLedgerError:
                    gave_up[0] += 1
        return outcomes

    with ThreadPoolExecutor(WRITERS) as pool:
        outcomes = [o for share in pool.map(writer, [deliveries[k::WRITERS] for k in range(WRITERS)]) for o in share]
    return outcomes, gave_up[0]


@pytest.mark.slow
def test_sixteen_writers_count_exactly_finish_once_and_rarely_conflict(aws_env, capsys) -> None:
    # GIVEN the ledger behind the conflict double (items held 25 ms), with its shards, and squeezed onto one
    with serve_dynamodb_conflicts() as front:
        client = front.client()
        table = f"ledger-{uuid.uuid4().hex[:12]}"
        create_ledger_table(client, table)
        # WHEN 16 writers record a job of 80 groups (and 8 duplicates) at once (moto is slow: ~20 requests/s)
        sharded = DynamoDBLedger(client, table)
        outcomes, gave_up = _race(sharded, "sharded", 80)
        stats = front.stats()
        # THEN every group counted exactly once, exactly one call finished the job, the totals are exact
        job = sharded.get_job("sharded")
        assert sum(o.counted for o in outcomes) == 80
        assert sum(o.job_finished for o in outcomes) == 1
        assert (job.ok, job.failed, job.files, job.done) == (80 - 12, 12, 240, 80)
        assert job.bytes == sum(100 + i for i in range(80)) and job.finished_at is not None
        # AND conflicts are rare: no item is written by most verdicts
        front.core.reset_stats()
        # WHEN the same race runs on one counter item (what the ledger was before): 32 groups
        hot = DynamoDBLedger(client, table, max_shards=1)
        hot_outcomes, hot_gave_up = _race(hot, "hot", 32)
        hot_stats = front.stats()
        assert sum(o.job_finished for o in hot_outcomes) == 1
    with capsys.disabled():
        print(f"\n  sharded: {stats.writes} writes, {stats.conflicts} conflicts ({stats.conflict_ratio:.1%}), "
              f"{gave_up} verdicts retried by the caller; hottest item {stats.hottest_items[0]}"
              f"\n  one counter item: {hot_stats.writes} writes, {hot_stats.conflicts} conflicts "
              f"({hot_stats.conflict_ratio:.1%}), {hot_gave_up} verdicts retried by the caller")
    assert stats.conflict_ratio <= 0.10
    assert hot_stats.conflict_ratio >= 3 * stats.conflict_ratio

"""The Ledger contract, run against every implementation: in-memory, SQLite, DynamoDB (moto) and DynamoDB behind
the conflict double (real contention: cancelled transactions, items held 25 ms, 16 concurrent writers).

Counting is exactly-once under duplicate delivery, and exactly one call ever reports ``job_finished``.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.adapters.ledger_sqlite import SqliteLedger, default_ledger_path
from fanfetch.core.ledger import GroupRecord, Validator
from fanfetch.errors import JobNotOpen, Retryable
from tests.doubles.dynamodb_conflicts import serve_dynamodb_conflicts
from tests.fakes import FakeClock, MemoryLedger

WRITERS = 16  # concurrent writers in the races below


class OneRequestAtATime:
    """A boto3 client proxy that lets one request run at a time.

    DynamoDB applies each request atomically; moto does not (a transaction snapshots the whole table
    and restores it on failure, undoing concurrent writes). Serializing single requests restores
    DynamoDB's guarantee while keeping every interleaving *between* our requests — the races the
    ledger must survive (count in one request, finish in the next).
    """

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


@dataclass
class Subject:
    ledger: Any
    # moto copies the whole table per transaction (quadratic), so the DynamoDB run uses fewer groups.
    concurrent_groups: int
    concurrent_upgrades: int = 50  # groups that every writer upgrades at once
    front: Any = None  # the conflict double, when the subject runs behind it


# Behind the conflict double the races take real time (items held 25 ms, backoff on a real clock): slow, CI only.
@pytest.fixture(params=["memory", "sqlite", "dynamodb", pytest.param("dynamodb-conflicts", marks=pytest.mark.slow)])
def subject(request, tmp_path, aws_env) -> Iterator[Subject]:
    if request.param == "memory":
        yield Subject(MemoryLedger(), concurrent_groups=200)
    elif request.param == "sqlite":
        ledger = SqliteLedger(default_ledger_path(str(tmp_path)))
        yield Subject(ledger, concurrent_groups=200)
        ledger.close()
    elif request.param == "dynamodb":
        with mock_aws():
            client = boto3.client("dynamodb", region_name="us-east-1")
            create_ledger_table(client, "fanfetch-ledger")
            yield Subject(DynamoDBLedger(OneRequestAtATime(client), "fanfetch-ledger", clock=FakeClock()),
                          concurrent_groups=60, concurrent_upgrades=15)
    else:  # real HTTP to the double, which serialises moto and cancels what DynamoDB would cancel
        with serve_dynamodb_conflicts() as front:
            client = front.client()
            table = f"ledger-{uuid.uuid4().hex[:12]}"  # moto's in-process backend outlives the test
            create_ledger_table(client, table)
            # the real backoff clock: conflicts must clear the way they do on AWS, by waiting
            yield Subject(DynamoDBLedger(client, table), concurrent_groups=60, concurrent_upgrades=15, front=front)


def _verdict(job: str, i: int, *, finished_at: float = 100.0) -> GroupRecord:
    """Group i: every 5th fails; ok groups alternate changed/unchanged; validators per file."""
    failed = i % 5 == 4
    return GroupRecord(
        job_id=job,
        group_id=f"g{i:04d}",
        status="failed" if failed else "ok",
        key=f"out/{i}.csv",
        files=0 if failed else 2,
        bytes=0 if failed else 1000 + i,
        sha256=None if failed else f"{i:064x}",
        attempts=3 if failed else 2,
        error="404 Not Found" if failed else None,
        started_at=finished_at - 1,
        finished_at=finished_at,
        change=None if failed else ("changed" if i % 2 else "unchanged"),
        validators=() if failed else (Validator(f"http://o/{i}/a", etag=f'"{i}a"'),
                                      Validator(f"http://o/{i}/b", last_modified="Wed, 21 Oct 2015 07:28:00 GMT")),
    )


def _expected_totals(n: int) -> dict[str, int]:
    verdicts = [_verdict("x", i) for i in range(n)]
    ok = [v for v in verdicts if v.status == "ok"]
    return {
        "ok": len(ok),
        "failed": n - len(ok),
        "files": sum(v.files for v in verdicts),
        "bytes": sum(v.bytes for v in verdicts),
        "changed": sum(v.change == "changed" for v in verdicts),
        "unchanged": sum(v.change == "unchanged" for v in verdicts),
    }


def _totals(job: Any) -> dict[str, int]:
    return {name: getattr(job, name) for name in ("ok", "failed", "files", "bytes", "changed", "unchanged")}


def _open(ledger: Any, job: str, groups: int) -> Any:
    return ledger.open_job(job, total_groups=groups, total_files=2 * groups,
                           results_location=f"s3://b/_jobs/{job}/results.jsonl", now=50.0,
                           group_ids=[f"g{i:04d}" for i in range(groups)])


def test_open_job_is_idempotent_and_keeps_the_first_record(subject: Subject) -> None:
    # GIVEN a job opened once
    first = _open(subject.ledger, "j1", 3)
    # WHEN it is opened again (a retried producer) with other numbers
    again = subject.ledger.open_job("j1", total_groups=99, total_files=99, results_location="elsewhere", now=60.0)
    # THEN the original job stands, untouched
    assert again == first == subject.ledger.get_job("j1")
    assert (first.total_groups, first.total_files, first.started_at, first.done, first.finished_at) == (3, 6, 50.0, 0,
                                                                                                         None)
    assert first.results_location == "s3://b/_jobs/j1/results.jsonl"


def test_unknown_job_is_none_and_a_verdict_for_it_is_a_retryable_job_not_open(subject: Subject) -> None:
    assert subject.ledger.get_job("nope") is None
    with pytest.raises(JobNotOpen) as raised:
        subject.ledger.record_group(_verdict("nope", 0))
    assert isinstance(raised.value, Retryable)
    assert subject.ledger.list_groups("nope") == []


def test_counts_are_exact_and_the_last_verdict_finishes_the_job(subject: Subject) -> None:
    # GIVEN a job of 10 groups
    _open(subject.ledger, "j", 10)
    # WHEN each group's verdict is recorded once
    outcomes = [subject.ledger.record_group(_verdict("j", i, finished_at=100.0 + i)) for i in range(10)]
    # THEN each counted, only the last finished the job, at that verdict's time
    assert [o.counted for o in outcomes] == [True] * 10
    assert [o.job_finished for o in outcomes] == [False] * 9 + [True]
    job = subject.ledger.get_job("j")
    assert _totals(job) == _expected_totals(10)
    assert job.done == job.total_groups == 10 and job.finished
    assert job.finished_at == 109.0
    assert outcomes[-1].job == job


def test_every_verdict_recorded_twice_leaves_the_counts_unchanged(subject: Subject) -> None:
    # GIVEN a job of 10 groups, every message delivered twice (the copy right after the original)
    _open(subject.ledger, "j", 10)
    outcomes = []
    for i in range(10):
        outcomes.append(subject.ledger.record_group(_verdict("j", i)))
        outcomes.append(subject.ledger.record_group(_verdict("j", i, finished_at=200.0)))
    # THEN only first deliveries counted, one call finished the job and totals are those of one delivery each
    assert [o.counted for o in outcomes] == [True, False] * 10
    assert sum(o.job_finished for o in outcomes) == 1
    assert _totals(subject.ledger.get_job("j")) == _expected_totals(10)
    assert len(subject.ledger.list_groups("j")) == 10


def test_a_duplicate_with_a_different_verdict_does_not_replace_the_first(subject: Subject) -> None:
    # GIVEN group 0 recorded ok
    _open(subject.ledger, "j", 2)
    subject.ledger.record_group(_verdict("j", 0))
    # WHEN a late duplicate says it failed
    late = GroupRecord(job_id="j", group_id="g0000", status="failed", key="out/0.csv", error="timeout")
    outcome = subject.ledger.record_group(late)
    # THEN it is not counted and the stored verdict is still the first
    assert not outcome.counted and not outcome.job_finished
    assert subject.ledger.get_job("j").failed == 0
    assert [g.status for g in subject.ledger.list_groups("j")] == ["ok"]


def test_concurrent_duplicate_deliveries_count_exactly_and_finish_once(subject: Subject) -> None:
    # GIVEN a job whose every group is delivered twice, in random order, to 16 concurrent workers
    n = subject.concurrent_groups
    _open(subject.ledger, "big", n)
    deliveries = [_verdict("big", i) for i in range(n)] * 2
    random.Random(5).shuffle(deliveries)
    start = threading.Barrier(WRITERS)

    def worker(share: list[GroupRecord]) -> list[Any]:
        start.wait()
        return [subject.ledger.record_group(record) for record in share]

    # WHEN they all record at once
    with ThreadPoolExecutor(WRITERS) as pool:
        outcomes = [o for share in pool.map(worker, [deliveries[k::WRITERS] for k in range(WRITERS)]) for o in share]
    # THEN every group counted once, the totals are exact and exactly one call saw the job finish
    assert sum(o.counted for o in outcomes) == n
    assert sum(o.job_finished for o in outcomes) == 1
    job = subject.ledger.get_job("big")
    assert _totals(job) == _expected_totals(n)
    assert job.finished and job.finished_at is not None


def test_when_the_last_groups_finish_together_exactly_one_caller_finishes_the_job(subject: Subject) -> None:
    # GIVEN 10 jobs, each with all but its last 2 groups recorded
    for round_ in range(10):
        job = f"race{round_}"
        _open(subject.ledger, job, 6)
        for i in range(4):
            subject.ledger.record_group(_verdict(job, i))
        # WHEN the last 2 groups, each delivered twice, are recorded by 4 workers released together
        start = threading.Barrier(4)
        last = [_verdict(job, 4), _verdict(job, 5), _verdict(job, 4), _verdict(job, 5)]

        def record(record: GroupRecord, start: threading.Barrier = start) -> Any:
            start.wait()
            return subject.ledger.record_group(record)

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(record, last))
        # THEN exactly one of them finished the job
        assert sum(o.job_finished for o in outcomes) == 1, job
        assert sum(o.counted for o in outcomes) == 2, job


def test_list_groups_with_and_without_a_status_filter(subject: Subject) -> None:
    # GIVEN a job with 8 ok and 2 failed groups (and another job, which must not leak in)
    _open(subject.ledger, "j", 10)
    _open(subject.ledger, "other", 1)
    for i in range(10):
        subject.ledger.record_group(_verdict("j", i))
    subject.ledger.record_group(_verdict("other", 4))
    # THEN listing returns each group's stored verdict, filtered by status on request
    everything = subject.ledger.list_groups("j")
    assert sorted(g.group_id for g in everything) == [f"g{i:04d}" for i in range(10)]
    assert sorted(everything, key=lambda g: g.group_id) == [_verdict("j", i) for i in range(10)]
    failed = subject.ledger.list_groups("j", status="failed")
    assert sorted(g.group_id for g in failed) == ["g0004", "g0009"]
    assert all(g.error == "404 Not Found" and g.attempts == 3 for g in failed)
    assert len(subject.ledger.list_groups("j", status="ok")) == 8


def test_last_validators_round_trip_through_ok_verdicts(subject: Subject) -> None:
    # GIVEN an ok verdict for out/1.csv in one job, then a newer one for the same key in the next job
    _open(subject.ledger, "monday", 2)
    subject.ledger.record_group(_verdict("monday", 1))
    _open(subject.ledger, "tuesday", 2)
    newer = GroupRecord(job_id="tuesday", group_id="g0001", status="ok", key="out/1.csv", sha256="f" * 64,
                        validators=(Validator("http://o/1/a", etag='"v2"', last_modified="Thu, 22 Oct 2015"),))
    # THEN the key's validators are those of the latest ok verdict; failures and unknown keys store none
    assert subject.ledger.last_validators("out/1.csv") == ("0" * 63 + "1", _verdict("monday", 1).validators)
    subject.ledger.record_group(newer)
    assert subject.ledger.last_validators("out/1.csv") == ("f" * 64, newer.validators)
    subject.ledger.record_group(_verdict("monday", 4))  # failed
    assert subject.ledger.last_validators("out/4.csv") == (None, ())
    assert subject.ledger.last_validators("never/stored.csv") == (None, ())


def test_a_group_with_thousands_of_validators_round_trips(subject: Subject) -> None:
    # GIVEN a group of 3000 files, each with an ETag and a Last-Modified (too big for a plain item)
    _open(subject.ledger, "j", 1)
    validators = tuple(Validator(f"https://data.example.org/station/{i}/year.csv", etag=f'"{i:032x}"',
                                 last_modified="Wed, 21 Oct 2015 07:28:00 GMT") for i in range(3000))
    record = GroupRecord(job_id="j", group_id="huge", status="ok", key="huge.csv", files=3000, sha256="a" * 64,
                         validators=validators)
    # WHEN recorded
    assert subject.ledger.record_group(record).job_finished
    # THEN the validators come back intact
    assert subject.ledger.last_validators("huge.csv") == ("a" * 64, validators)
    assert subject.ledger.list_groups("j")[0].validators == validators


def _failed(job: str, i: int, *, error: str = "HTTP 503 after 5 attempts") -> GroupRecord:
    """Group i dead-lettered: no output, its reason kept."""
    return GroupRecord(job_id=job, group_id=f"g{i:04d}", status="failed", key=f"out/{i}.csv", attempts=5,
                       error=error, started_at=99.0, finished_at=100.0)


def _rerun_ok(job: str, i: int) -> GroupRecord:
    """Group i redriven (or re-run) later, succeeding this time: 3 files, a new output and its validators."""
    return GroupRecord(job_id=job, group_id=f"g{i:04d}", status="ok", key=f"out/{i}.csv", files=3, bytes=5000 + i,
                       sha256=f"{i:063x}f", attempts=1, started_at=299.0, finished_at=300.0, change="changed",
                       validators=(Validator(f"http://o/{i}/a", etag=f'"redo{i}"'),))


def test_a_later_ok_upgrades_a_failed_group_once_and_moves_the_counts(subject: Subject) -> None:
    # GIVEN a finished job of 10 groups, g0004 and g0009 failed
    _open(subject.ledger, "j", 10)
    for i in range(10):
        subject.ledger.record_group(_verdict("j", i, finished_at=100.0 + i))
    before = subject.ledger.get_job("j")
    # WHEN g0004 is redriven and succeeds
    outcome = subject.ledger.record_group(_rerun_ok("j", 4))
    # THEN it counts as an upgrade: failed -1, ok +1, its files/bytes/change added; the job is not finished again
    assert (outcome.counted, outcome.upgraded, outcome.job_finished) == (True, True, False)
    expected = dict(_totals(before), ok=before.ok + 1, failed=before.failed - 1, files=before.files + 3,
                    bytes=before.bytes + 5004, changed=before.changed + 1)
    job = subject.ledger.get_job("j")
    assert _totals(job) == expected and outcome.job == job
    assert job.finished_at == before.finished_at == 109.0 and job.done == 10
    # AND the group's stored verdict and its output's validators are the new ones
    assert [g.group_id for g in subject.ledger.list_groups("j", status="failed")] == ["g0009"]
    assert next(g for g in subject.ledger.list_groups("j") if g.group_id == "g0004") == _rerun_ok("j", 4)
    assert subject.ledger.last_validators("out/4.csv") == ("0" * 62 + "4f", _rerun_ok("j", 4).validators)
    # AND a duplicate of the upgrade, or a later failure, changes nothing
    for late in (_rerun_ok("j", 4), _failed("j", 4)):
        again = subject.ledger.record_group(late)
        assert (again.counted, again.upgraded, again.job_finished) == (False, False, False)
    assert _totals(subject.ledger.get_job("j")) == expected


def test_failed_over_failed_is_not_counted_and_keeps_the_first_reason(subject: Subject) -> None:
    _open(subject.ledger, "j", 2)
    assert subject.ledger.record_group(_failed("j", 0, error="first")).counted
    outcome = subject.ledger.record_group(_failed("j", 0, error="second"))
    assert (outcome.counted, outcome.upgraded) == (False, False)
    assert subject.ledger.get_job("j").failed == 1
    assert [g.error for g in subject.ledger.list_groups("j")] == ["first"]


def test_an_upgrade_before_the_job_finishes_leaves_the_remaining_groups_to_finish_it(subject: Subject) -> None:
    # GIVEN a job of 3 groups whose first failed and was then upgraded while the others were still running
    _open(subject.ledger, "j", 3)
    subject.ledger.record_group(_failed("j", 0))
    upgrade = subject.ledger.record_group(_rerun_ok("j", 0))
    assert upgrade.upgraded and not upgrade.job_finished
    # WHEN the other two groups are recorded
    outcomes = [subject.ledger.record_group(_verdict("j", i)) for i in (1, 2)]
    # THEN the group was not counted as done twice: the last of the others finishes the job, with exact counts
    assert [o.job_finished for o in outcomes] == [False, True]
    job = subject.ledger.get_job("j")
    assert (job.ok, job.failed, job.done, job.files) == (3, 0, 3, 3 + 2 + 2)


def test_concurrent_upgrades_of_the_same_groups_count_each_once(subject: Subject) -> None:
    # GIVEN a finished job whose groups (50; fewer on moto) all failed
    n = subject.concurrent_upgrades
    _open(subject.ledger, "redo", n)
    for i in range(n):
        subject.ledger.record_group(_failed("redo", i))
    finished_at = subject.ledger.get_job("redo").finished_at
    assert finished_at is not None
    # WHEN 16 workers released together each record the same successful re-run of every group (own order)
    start = threading.Barrier(WRITERS)

    def worker(seed: int) -> list[Any]:
        records = [_rerun_ok("redo", i) for i in range(n)]
        random.Random(seed).shuffle(records)
        start.wait()
        return [subject.ledger.record_group(record) for record in records]

    with ThreadPoolExecutor(WRITERS) as pool:
        outcomes = [o for share in pool.map(worker, range(WRITERS)) for o in share]
    # THEN each group was upgraded exactly once, the totals are those of 50 ok groups and the job stays finished
    assert sum(o.upgraded for o in outcomes) == sum(o.counted for o in outcomes) == n
    assert not any(o.job_finished for o in outcomes)
    job = subject.ledger.get_job("redo")
    assert _totals(job) == {"ok": n, "failed": 0, "files": 3 * n, "bytes": sum(5000 + i for i in range(n)),
                            "changed": n, "unchanged": 0}
    assert job.finished_at == finished_at
    assert subject.ledger.list_groups("redo", status="failed") == []


def test_iter_groups_streams_every_group_in_order_without_validators(subject: Subject) -> None:
    # GIVEN a job of 30 groups (ok ones carry validators)
    _open(subject.ledger, "j", 30)
    for i in reversed(range(30)):
        subject.ledger.record_group(_verdict("j", i))
    # WHEN its groups are streamed, all and only the failed ones
    streamed = list(subject.ledger.iter_groups("j"))
    failed = list(subject.ledger.iter_groups("j", status="failed"))
    # THEN they are the listed groups, in group id order, minus the validators the manifest never needs
    listed = subject.ledger.list_groups("j")
    assert [g.group_id for g in streamed] == sorted(g.group_id for g in listed)
    assert all(g.validators == () for g in streamed)
    assert [(g.status, g.bytes, g.sha256, g.error) for g in streamed] == [
        (g.status, g.bytes, g.sha256, g.error) for g in listed]
    assert [g.group_id for g in failed] == [f"g{i:04d}" for i in range(30) if i % 5 == 4]


def test_one_caller_at_a_time_holds_the_announcement_until_it_is_announced(subject: Subject) -> None:
    # GIVEN a job finished by its last verdict, not yet announced
    _open(subject.ledger, "j", 2)
    assert subject.ledger.claim_announcement("j", now=100.0, lease_s=60) is None  # not finished: nothing to claim
    subject.ledger.record_group(_verdict("j", 0))
    assert subject.ledger.record_group(_verdict("j", 1)).job_finished
    # WHEN one caller claims it
    claimed = subject.ledger.claim_announcement("j", now=100.0, lease_s=60)
    # THEN nobody else may while the claim lasts; after it lapses (its holder died) another caller may
    assert claimed is not None and claimed.finished_at is not None and _totals(claimed) == _expected_totals(2)
    assert subject.ledger.claim_announcement("j", now=159.0, lease_s=60) is None
    assert subject.ledger.claim_announcement("j", now=161.0, lease_s=60) is not None
    # AND a claim given back is free at once
    subject.ledger.release_announcement("j")
    assert subject.ledger.claim_announcement("j", now=162.0, lease_s=60) is not None
    # AND once announced, nobody claims it again and duplicates stop asking for it
    subject.ledger.mark_announced("j", now=170.0)
    assert subject.ledger.claim_announcement("j", now=999.0, lease_s=60) is None
    assert subject.ledger.get_job("j").announced_at == 170.0
    assert subject.ledger.record_group(_verdict("j", 1)).announce_pending is False


def test_a_redelivery_after_a_finish_that_was_never_announced_reports_it_pending(subject: Subject) -> None:
    # GIVEN a job whose finisher counted the last verdict and died before announcing
    _open(subject.ledger, "j", 2)
    subject.ledger.record_group(_verdict("j", 0))
    finisher = subject.ledger.record_group(_verdict("j", 1))
    # WHEN any of its messages comes back
    again = subject.ledger.record_group(_verdict("j", 0))
    # THEN it is not counted, does not finish the job again, but says the announcement is pending
    assert finisher.job_finished and not finisher.announce_pending
    assert (again.counted, again.job_finished, again.announce_pending) == (False, False, True)
    assert again.job is not None and again.job.finished_at == finisher.job.finished_at

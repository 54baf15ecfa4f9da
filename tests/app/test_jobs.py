"""Finishing a job: the results manifest (successes and failures), summary.json, then one "job finished";
an upgraded failure rewrites the first two."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.app.jobs import (
    finish_job,
    record_verdict,
    results_key_for,
    settle_outcome,
    verdict_from_result,
    write_results,
)
from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome, Validator
from fanfetch.core.models import FileResult, GroupResult, GroupStatus
from fanfetch.errors import RetryablePublishError
from tests.fakes import MemoryLedger, MemoryStore, RecordingEvents

_LOCATION = "s3://out/data/_jobs/j1/results.jsonl"


def _record(group: str, *, ok: bool = True, job: str = "j1") -> GroupRecord:
    if ok:
        return GroupRecord(job_id=job, group_id=group, status="ok", key=f"st/{group}.csv", files=3, bytes=300,
                           sha256="c" * 64, attempts=3, finished_at=200.0, change="changed")
    return GroupRecord(job_id=job, group_id=group, status="failed", key=f"st/{group}.csv", attempts=5,
                       error="http://o/x: HTTP 404", finished_at=210.0)


def _ledger_with(groups: list[GroupRecord], *, total: int) -> MemoryLedger:
    ledger = MemoryLedger()
    ledger.open_job("j1", total_groups=total, total_files=3 * total, results_location=_LOCATION, now=100.0)
    for g in groups:
        ledger.record_group(g)
    return ledger


def _lines(store: MemoryStore, key: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in store.objects[key].decode().splitlines()]


def test_finish_job_writes_results_and_summary_then_announces_once() -> None:
    # GIVEN a finished job of two ok groups and one failed group
    ledger = _ledger_with([_record("b"), _record("a"), _record("c", ok=False)], total=3)
    job = ledger.get_job("j1")
    store, events = MemoryStore(), RecordingEvents()
    # WHEN it is finished
    finish_job(job, ledger=ledger, store=store, events=events, results_key=results_key_for("j1"))
    # THEN results.jsonl lists every group, failures with their reason
    assert _lines(store, "_jobs/j1/results.jsonl") == [
        {"group": "a", "status": "ok", "key": "st/a.csv", "files": 3, "bytes": 300, "sha256": "c" * 64,
         "attempts": 3, "error": None, "change": "changed"},
        {"group": "b", "status": "ok", "key": "st/b.csv", "files": 3, "bytes": 300, "sha256": "c" * 64,
         "attempts": 3, "error": None, "change": "changed"},
        {"group": "c", "status": "failed", "key": "st/c.csv", "files": 0, "bytes": 0, "sha256": None,
         "attempts": 5, "error": "http://o/x: HTTP 404", "change": None},
    ]
    # AND summary.json sits next to it with the totals and the results location
    summary = json.loads(store.objects["_jobs/j1/summary.json"])
    assert (summary["ok"], summary["failed"], summary["bytes"], summary["status"]) == (2, 1, 600, "finished")
    assert summary["results_location"] == _LOCATION and summary["duration_s"] == 110.0
    # AND one event points to the manifest
    assert events.finished == [(job, _LOCATION)]


def test_the_event_is_published_only_after_the_manifest_is_stored() -> None:
    # GIVEN events that look into the store when they are published
    ledger = _ledger_with([_record("a")], total=1)
    store = MemoryStore()
    seen: list[set[str]] = []

    class Peeking(RecordingEvents):
        def job_finished(self, job: JobRecord, *, results_location: str) -> None:
            seen.append(set(store.objects))

    finish_job(ledger.get_job("j1"), ledger=ledger, store=store, events=Peeking())
    # THEN whoever reacts to the event can already read both files
    assert seen == [{"_jobs/j1/results.jsonl", "_jobs/j1/summary.json"}]


def test_a_job_without_a_results_location_points_the_event_at_the_results_key() -> None:
    ledger = MemoryLedger()
    ledger.open_job("local", total_groups=1, total_files=1, results_location="", now=1.0)
    outcome = ledger.record_group(_record("a", job="local"))
    events = RecordingEvents()
    finish_job(outcome.job, ledger=ledger, store=MemoryStore(), events=events)
    assert events.finished[0][1] == "_jobs/local/results.jsonl"


def test_concurrent_workers_finishing_the_last_groups_publish_exactly_one_event() -> None:
    # GIVEN 50 jobs, each with 2 groups left, delivered twice to 4 workers released together
    store, events = MemoryStore(), RecordingEvents()
    ledger = MemoryLedger()
    for n in range(50):
        job = f"job{n}"
        ledger.open_job(job, total_groups=4, total_files=12, results_location="", now=1.0)
        ledger.record_group(_record("a", job=job))
        ledger.record_group(_record("b", job=job))
        start = threading.Barrier(4)

        def deliver(record: GroupRecord, start: threading.Barrier = start) -> None:
            start.wait()
            record_verdict(ledger, record, store=store, events=events)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(deliver, [_record("c", job=job), _record("d", ok=False, job=job)] * 2))
    # THEN each job was announced once and its manifest written once
    assert sorted(job.job_id for job, _ in events.finished) == sorted(f"job{n}" for n in range(50))
    assert all(store.puts[results_key_for(f"job{n}")] == 1 for n in range(50))


def test_a_verdict_that_does_not_finish_the_job_writes_and_announces_nothing() -> None:
    ledger = _ledger_with([], total=2)
    store, events = MemoryStore(), RecordingEvents()
    outcome = record_verdict(ledger, _record("a"), store=store, events=events)
    assert outcome.counted and not outcome.job_finished
    assert store.objects == {} and events.finished == []


def test_a_failed_announcement_propagates_and_the_verdict_stays_counted() -> None:
    # GIVEN the bus rejects the event
    ledger = _ledger_with([], total=1)
    events = RecordingEvents(fail_with=RetryablePublishError("throttled"))
    # WHEN the last verdict is recorded
    with pytest.raises(RetryablePublishError):
        record_verdict(ledger, _record("a"), store=MemoryStore(), events=events)
    # THEN the error reaches the caller (the handler reports it) and the group is not counted twice later
    assert ledger.get_job("j1").ok == 1
    assert ledger.record_group(_record("a")).counted is False


def test_an_upgrade_of_a_finished_job_rewrites_results_and_summary_without_a_second_event() -> None:
    # GIVEN a finished, announced job whose group "c" failed
    ledger = _ledger_with([_record("a"), _record("b")], total=3)
    store, events = MemoryStore(), RecordingEvents()
    record_verdict(ledger, _record("c", ok=False), store=store, events=events)
    assert json.loads(store.objects["_jobs/j1/summary.json"])["failed"] == 1
    # WHEN "c" is redriven and succeeds
    outcome = record_verdict(ledger, _record("c"), store=store, events=events)
    # THEN the manifest and summary now say ok, the finish time is kept, and there was still one event
    assert outcome.upgraded and not outcome.job_finished
    assert [line["status"] for line in _lines(store, "_jobs/j1/results.jsonl")] == ["ok", "ok", "ok"]
    summary = json.loads(store.objects["_jobs/j1/summary.json"])
    assert (summary["ok"], summary["failed"], summary["files"], summary["status"]) == (3, 0, 9, "finished")
    assert summary["finished_at"] == "1970-01-01T00:03:30.000Z"  # the failed verdict's time: when it finished
    assert len(events.finished) == 1
    # AND a duplicate of the redriven message rewrites nothing
    puts = dict(store.puts)
    assert not record_verdict(ledger, _record("c"), store=store, events=events).counted
    assert store.puts == puts


def test_an_upgrade_of_a_running_job_writes_nothing_and_the_finishing_call_sees_it() -> None:
    # GIVEN a job of 2 groups whose "a" failed and was upgraded before "b" finished
    ledger = _ledger_with([_record("a", ok=False)], total=2)
    store, events = MemoryStore(), RecordingEvents()
    assert record_verdict(ledger, _record("a"), store=store, events=events).upgraded
    assert store.objects == {} and events.finished == []
    # WHEN "b" finishes the job
    record_verdict(ledger, _record("b"), store=store, events=events)
    # THEN one announcement, and a manifest with both groups ok
    assert len(events.finished) == 1 and events.finished[0][0].ok == 2
    assert [line["status"] for line in _lines(store, "_jobs/j1/results.jsonl")] == ["ok", "ok"]


def test_an_upgrade_that_also_finishes_the_job_announces_it_once() -> None:
    # GIVEN an outcome that upgraded a group and finished the job (its earlier finishing step had died)
    ledger = _ledger_with([_record("a")], total=1)
    job = ledger.get_job("j1")
    store, events = MemoryStore(), RecordingEvents()
    # WHEN it is settled
    settle_outcome(RecordOutcome(counted=True, job_finished=True, job=job, upgraded=True),
                   ledger=ledger, store=store, events=events)
    # THEN the job is finished normally: results written once and one event
    assert events.finished == [(job, _LOCATION)]
    assert store.puts[results_key_for("j1")] == 1


def test_write_results_returns_where_the_results_are() -> None:
    ledger = _ledger_with([_record("a")], total=1)
    store = MemoryStore()
    assert write_results(ledger.get_job("j1"), ledger=ledger, store=store, results_key="x/results.jsonl") == _LOCATION
    assert set(store.objects) == {"x/results.jsonl", "x/summary.json"}


def test_verdict_from_result_keeps_each_files_validators() -> None:
    # GIVEN a stored group whose origin sent an ETag for one file, Last-Modified for another, neither for a third
    result = GroupResult(
        group_id="g", status=GroupStatus.OK, key="k.csv", files=3, bytes=30, sha256="d" * 64, attempts=4,
        file_results=(FileResult("http://o/1", 10, 1, etag='"e1"'),
                      FileResult("http://o/2", 10, 2, last_modified="Wed, 21 Oct 2015 07:28:00 GMT"),
                      FileResult("http://o/3", 10, 1)),
    )
    # WHEN it becomes a ledger record
    record = verdict_from_result("j", result, started_at=5.0, finished_at=9.0, change="changed")
    # THEN the verdict and the validators worth a conditional request next time are kept
    assert (record.status, record.key, record.files, record.bytes, record.sha256, record.attempts) == (
        "ok", "k.csv", 3, 30, "d" * 64, 4)
    assert (record.started_at, record.finished_at, record.change) == (5.0, 9.0, "changed")
    assert record.validators == (Validator("http://o/1", etag='"e1"'),
                                 Validator("http://o/2", last_modified="Wed, 21 Oct 2015 07:28:00 GMT"))


def test_a_finish_whose_announcement_failed_is_completed_by_the_next_delivery() -> None:
    # GIVEN the last verdict of a job, whose event publication fails (EventBridge unavailable)
    ledger = _ledger_with([_record("a")], total=2)
    store, down = MemoryStore(), RecordingEvents(fail_with=RetryablePublishError("PutEvents: InternalFailure"))
    with pytest.raises(RetryablePublishError):
        record_verdict(ledger, _record("b"), store=store, events=down)
    # THEN the job is finished but not announced, and the claim was given back
    assert ledger.get_job("j1").finished_at is not None and ledger.get_job("j1").announced_at is None
    assert ledger.claims == {}
    # WHEN the message comes back (the worker did not acknowledge it) and EventBridge is up again
    events = RecordingEvents()
    outcome = record_verdict(ledger, _record("b"), store=store, events=events, time_left_s=lambda: 60.0)
    # THEN the duplicate is not counted, but it completes the finish: results, summary, one event, announced
    assert (outcome.counted, outcome.job_finished, outcome.announce_pending) == (False, False, True)
    assert [line["group"] for line in _lines(store, "_jobs/j1/results.jsonl")] == ["a", "b"]
    assert json.loads(store.objects["_jobs/j1/summary.json"])["ok"] == 2
    assert len(events.finished) == 1 and ledger.get_job("j1").announced_at is not None
    # AND later deliveries announce nothing more
    record_verdict(ledger, _record("a"), store=store, events=events)
    assert len(events.finished) == 1


def test_a_finisher_short_of_time_leaves_the_finish_to_the_next_delivery() -> None:
    # GIVEN the last verdict arrives with 2 s left before the invocation's deadline
    from fanfetch.errors import FinishDeferred

    ledger = _ledger_with([_record("a")], total=2)
    store, events = MemoryStore(), RecordingEvents()
    # WHEN it is recorded
    with pytest.raises(FinishDeferred, match="deferred"):
        record_verdict(ledger, _record("b"), store=store, events=events, time_left_s=lambda: 2.0)
    # THEN it is counted and the job finished, but nothing was written or announced, and nothing is claimed
    assert ledger.get_job("j1").done == 2 and ledger.get_job("j1").finished_at is not None
    assert store.objects == {} and events.finished == [] and ledger.claims == {}
    # WHEN the message comes back to a worker with time; THEN that delivery finishes and announces the job
    record_verdict(ledger, _record("b"), store=store, events=events, time_left_s=lambda: 250.0)
    assert len(events.finished) == 1 and "_jobs/j1/results.jsonl" in store.objects


def test_while_one_caller_holds_the_announcement_another_announces_nothing() -> None:
    # GIVEN a finished job whose announcement a (live) finisher has claimed
    ledger = _ledger_with([_record("a"), _record("b")], total=2)
    assert ledger.claim_announcement("j1", now=1e12, lease_s=900) is not None
    store, events = MemoryStore(), RecordingEvents()
    # WHEN a duplicate delivery arrives meanwhile
    outcome = record_verdict(ledger, _record("a"), store=store, events=events)
    # THEN it sees the announcement pending but leaves it to the holder
    assert outcome.announce_pending
    assert store.objects == {} and events.finished == []


def test_the_results_manifest_is_streamed_from_the_ledger_without_validators() -> None:
    # GIVEN a finished job of 2,500 groups with validators, on the SQLite ledger (pages of 1,000)
    import tempfile

    from fanfetch.adapters.ledger_sqlite import SqliteLedger

    with tempfile.TemporaryDirectory() as folder:
        ledger = SqliteLedger(f"{folder}/ledger.sqlite")
        ledger.open_job("j1", total_groups=2500, total_files=2500, results_location=_LOCATION, now=1.0)
        for i in range(2500):
            ledger.record_group(GroupRecord(job_id="j1", group_id=f"g{i:05d}", status="ok", key=f"k{i}", files=1,
                                            bytes=i, validators=(Validator(f"http://o/{i}", etag='"e"'),)))
        store = MemoryStore()
        # WHEN its results are written
        write_results(ledger.get_job("j1"), ledger=ledger, store=store)
        ledger.close()
    # THEN every group is there once, in order, with its sha256 recorded by the store
    lines = _lines(store, "_jobs/j1/results.jsonl")
    assert [line["group"] for line in lines] == [f"g{i:05d}" for i in range(2500)]
    assert store.sha["_jobs/j1/results.jsonl"] is not None

"""The ops services through ports: submit (validate, upload, invoke), progress and failures from a
ledger, and the watch loop with an injected sleep."""

from __future__ import annotations

import json

import pytest

from fanfetch.adapters.manifests import load_job
from fanfetch.app.ops import (
    UnknownJob,
    list_failures,
    read_progress,
    submit_manifest,
    watch_progress,
)
from fanfetch.core.ledger import GroupRecord
from fanfetch.core.models import MergeMode
from fanfetch.errors import ManifestError
from fanfetch.ports import InvocationFailed, InvocationOutcomeUnknown
from tests.fakes import MemoryLedger, MemoryStore


class RecordingInvoker:
    def __init__(self, answer=None, error: BaseException | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.answer = answer
        self.error = error

    def invoke(self, function_name, payload):
        self.calls.append((function_name, dict(payload)))
        if self.error is not None:
            raise self.error
        return self.answer


def _jsonl(tmp_path, groups: int = 2):
    path = tmp_path / "stations.jsonl"
    path.write_text("\n".join(json.dumps({"group": f"g{i}", "urls": [f"https://example.org/{i}.csv"]})
                              for i in range(groups)))
    return path


def _load(path, merge: MergeMode = MergeMode.CONCAT):
    return load_job(str(path), default_merge=merge)


def test_submit_uploads_the_manifest_under_its_job_id_and_invokes_the_producer_on_it(tmp_path):
    # GIVEN a valid manifest and a producer that answers like ours
    path = _jsonl(tmp_path)
    store = MemoryStore()
    invoker = RecordingInvoker({"job_id": "J", "groups": 2, "messages": 2})

    # WHEN it is submitted
    result = submit_manifest(_load(path, MergeMode.CSV), str(path), merge=MergeMode.CSV, bucket="bkt",
                             producer_function="producer-fn", store=store, invoker=invoker)

    # THEN the manifest lies byte for byte under _manifests/<job id>/ and the producer got its s3:// location
    [key] = store.objects
    assert key.startswith("_manifests/") and key.endswith("/stations.jsonl")
    assert store.objects[key] == path.read_bytes()
    assert invoker.calls == [("producer-fn", {"manifest": f"s3://bkt/{key}", "merge": "csv"})]
    assert (result.job_id, result.groups, result.messages) == ("J", 2, 2)


def test_submit_uploads_a_job_specs_table_beside_it_where_the_producer_will_look(tmp_path):
    # GIVEN a job spec naming a table in a subfolder
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stations.csv").write_text("station_id,first_year,last_year\n1,2000,2001\n")
    spec = tmp_path / "job.toml"
    spec.write_text('[job]\nurl = "https://example.org/{station_id}/{year}"\ngroup = "{station_id}"\n'
                    '[table]\npath = "data/stations.csv"\n'
                    '[expand]\nyear = { from = "first_year", to = "last_year" }\n')
    store = MemoryStore()

    # WHEN it is submitted
    result = submit_manifest(_load(spec), str(spec), merge=MergeMode.CONCAT, bucket="bkt", producer_function="p",
                             store=store, invoker=RecordingInvoker({"job_id": "J", "groups": 1, "messages": 1}))

    # THEN the table is at the same relative place under the job's prefix
    spec_key, table_key = result.uploaded
    assert spec_key.rsplit("/", 1)[0] + "/data/stations.csv" == table_key
    assert store.objects[table_key] == (tmp_path / "data" / "stations.csv").read_bytes()


def test_a_spec_whose_table_lies_outside_its_folder_is_refused_before_any_upload(tmp_path):
    # GIVEN a valid spec whose table is ../stations.csv
    (tmp_path / "stations.csv").write_text("station_id\n1\n")
    (tmp_path / "jobs").mkdir()
    spec = tmp_path / "jobs" / "job.toml"
    spec.write_text('[job]\nurl = "https://example.org/{station_id}"\ngroup = "{station_id}"\n'
                    '[table]\npath = "../stations.csv"\n')
    store, invoker = MemoryStore(), RecordingInvoker()

    # WHEN / THEN it is an input error naming the field, and nothing was uploaded or invoked
    with pytest.raises(ManifestError, match="table.path"):
        submit_manifest(_load(spec), str(spec), merge=MergeMode.CONCAT, bucket="b", producer_function="p",
                        store=store, invoker=invoker)
    assert store.objects == {} and invoker.calls == []


def test_a_failing_producer_is_reported_with_its_remote_error_type(tmp_path):
    # GIVEN a producer that rejects the manifest
    invoker = RecordingInvoker(error=InvocationFailed("p", "ManifestError", "s3://b/x: cannot read"))
    # WHEN / THEN the failure carries the remote type, which marks it as the user's input
    with pytest.raises(InvocationFailed) as failure:
        path = _jsonl(tmp_path)
        submit_manifest(_load(path), str(path), merge=MergeMode.CONCAT, bucket="b", producer_function="p",
                        store=MemoryStore(), invoker=invoker)
    assert failure.value.is_input_error
    assert not InvocationFailed("p", "EnqueueError", "x").is_input_error


def test_a_producer_whose_answer_never_came_is_not_invoked_again_and_the_job_to_follow_is_named(tmp_path):
    # GIVEN a producer invoke whose answer never arrived (the request went out: it may be enqueueing)
    invoker = RecordingInvoker(error=InvocationOutcomeUnknown("p", "ReadTimeoutError", 960.0))
    path = _jsonl(tmp_path)
    job = _load(path)
    # WHEN submitted / THEN one invoke only, and the error names the job to follow instead of a resubmit
    with pytest.raises(InvocationOutcomeUnknown) as unknown:
        submit_manifest(job, str(path), merge=MergeMode.CONCAT, bucket="b", producer_function="p",
                        store=MemoryStore(), invoker=invoker)
    assert len(invoker.calls) == 1
    assert unknown.value.job_id == job.job_id
    assert f"fanfetch status {job.job_id}" in str(unknown.value) and "do not submit again" in str(unknown.value)


def _ledger_with(total: int, ok: int, failed: int, *, started: float = 1000.0) -> MemoryLedger:
    ledger = MemoryLedger()
    ledger.open_job("J", total_groups=total, total_files=total * 2, results_location="s3://b/r", now=started)
    for i in range(ok + failed):
        status = "ok" if i < ok else "failed"
        ledger.record_group(GroupRecord(job_id="J", group_id=f"g{i:02}", status=status, key=f"k{i}",
                                        files=2 if status == "ok" else 0, bytes=1000 if status == "ok" else 0,
                                        attempts=1 if status == "ok" else 3,
                                        error=None if status == "ok" else f"404 on g{i:02}",
                                        finished_at=started + 10))
    return ledger


def test_progress_gives_counts_rates_and_an_eta_from_the_remaining_groups():
    # GIVEN 4 of 10 groups done (3 ok, 1 failed) 20 s after the job started
    ledger = _ledger_with(10, 3, 1)
    # WHEN progress is read
    progress = read_progress(ledger, "J", now=1020.0)
    # THEN 0.2 groups/s leaves 6 groups for 30 s; bytes/s follows the stored bytes
    assert (progress.job.ok, progress.job.failed, progress.job.files, progress.job.bytes) == (3, 1, 6, 3000)
    assert progress.groups_per_s == pytest.approx(0.2)
    assert progress.bytes_per_s == pytest.approx(150.0)
    assert progress.eta_s == pytest.approx(30.0)
    assert progress.state == "running" and progress.to_dict()["done"] == 4


def test_a_finished_job_has_no_eta_and_its_rate_stops_at_the_finish():
    # GIVEN a job that finished 10 s after it started, read much later
    progress = read_progress(_ledger_with(2, 1, 1), "J", now=5000.0)
    # THEN the rate is over its 10 s, no ETA, and it says it finished with failures
    assert progress.elapsed_s == pytest.approx(10.0) and progress.eta_s is None
    assert progress.state == "finished with failures"


def test_an_unknown_job_is_an_input_error_for_status_and_failures():
    with pytest.raises(UnknownJob):
        read_progress(MemoryLedger(), "nope", now=0.0)
    with pytest.raises(UnknownJob):
        list_failures(MemoryLedger(), "nope")


def test_failures_lists_only_failed_groups_with_their_reasons():
    job, failed = list_failures(_ledger_with(5, 3, 2), "J")
    assert [(g.group_id, g.error) for g in failed] == [("g03", "404 on g03"), ("g04", "404 on g04")]
    assert job.failed == 2


def test_watch_refreshes_with_the_injected_sleep_until_the_job_finishes():
    # GIVEN a job with 3 groups and a "sleep" during which one more group finishes
    ledger = _ledger_with(3, 0, 0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        ledger.record_group(GroupRecord(job_id="J", group_id=f"late{len(slept)}", status="ok", key="k",
                                        finished_at=1000.0 + len(slept)))

    seen = []
    # WHEN watched
    final = watch_progress(ledger, "J", now=lambda: 1010.0, sleep=sleep, interval_s=2.5, on_update=seen.append)
    # THEN it refreshed after each sleep and stopped when finished
    assert slept == [2.5, 2.5, 2.5]
    assert [p.job.done for p in seen] == [0, 1, 2, 3] and final.finished


def test_ctrl_c_ends_the_watch_with_the_last_reading():
    ledger = _ledger_with(3, 1, 0)

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    final = watch_progress(ledger, "J", now=lambda: 1010.0, sleep=interrupted, interval_s=1, on_update=lambda p: None)
    assert final.job.done == 1 and not final.finished


def test_groups_without_a_verdict_never_arrived_only_when_nothing_is_queued():
    # GIVEN 4 of 10 groups done
    ledger = _ledger_with(10, 3, 1)
    # WHEN progress is read with the work queue empty / with messages queued / without looking at the queue
    empty, busy, unknown = (read_progress(ledger, "J", now=1020.0, queued=q) for q in (0, 3, None))
    # THEN only the empty queue says the 6 others never arrived
    assert (empty.never_arrived, busy.never_arrived, unknown.never_arrived) == (6, None, None)
    assert "6 groups have no verdict" in empty.notes()[0] and busy.notes() == unknown.notes() == []


def test_a_finished_job_not_yet_announced_says_so_until_it_is():
    ledger = _ledger_with(2, 1, 1)
    assert "not yet announced" in read_progress(ledger, "J", now=5000.0, queued=0).notes()[0]
    ledger.mark_announced("J", now=5001.0)
    assert read_progress(ledger, "J", now=5002.0, queued=0).notes() == []

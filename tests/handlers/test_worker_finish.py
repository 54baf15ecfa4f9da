"""A finish that cannot be lost: when the worker that counted a job's last verdict cannot write the results or
publish the event, that record comes back, and its redelivery completes the finish; a job enqueued only in part
finishes once the producer is invoked again."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from fanfetch.app.services import enqueue_job
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Job
from fanfetch.errors import EnqueueError, RetryablePublishError
from tests.conftest import FakeLambdaContext, sqs_event
from tests.fakes import FakeClock, FakeFetcher, MemoryLedger, MemoryQueue, MemoryStore, RecordingEvents
from tests.handlers.conftest import numbered_group

JOB = "job-finish"


def _message(i: int) -> str:
    return encode_message(JOB, numbered_group(i))


def test_a_failed_announcement_sends_the_finishing_record_back_and_its_redelivery_announces(faked_worker):
    # GIVEN a job of two groups and EventBridge failing the first "Job Finished"
    ledger = MemoryLedger()
    ledger.open_job(JOB, total_groups=2, total_files=2, results_location="s3://b/_jobs/job-finish/results.jsonl",
                    now=0.0)
    store = MemoryStore()
    events = RecordingEvents(fail_with=RetryablePublishError("PutEvents: InternalFailure"))
    module = faked_worker(FakeFetcher({f"https://o.example/{i}": b"data%d" % i for i in range(2)}),
                          ledger=ledger, events=events, store=store)
    # WHEN the batch with both groups is handled
    first = module.handler(sqs_event([_message(0), _message(1)]), FakeLambdaContext())
    # THEN both verdicts are counted and the job finished, but the record whose verdict finished it comes back
    assert ledger.get_job(JOB).done == 2 and ledger.get_job(JOB).finished_at is not None
    assert ledger.get_job(JOB).announced_at is None and events.finished == []
    assert first == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    # WHEN it is redelivered and EventBridge works again
    events.fail_with = None
    second = module.handler(sqs_event([_message(1)]), FakeLambdaContext())
    # THEN nothing is counted twice, the results and one event are out, and the job is marked announced
    assert second == {"batchItemFailures": []}
    assert ledger.get_job(JOB).done == 2 and len(events.finished) == 1
    assert "_jobs/job-finish/results.jsonl" in store.objects and ledger.get_job(JOB).announced_at is not None


def test_a_worker_without_time_left_leaves_the_finish_to_the_redelivery(faked_worker):
    # GIVEN a job of one group and an invocation whose groups' deadline has passed once the group is done
    ledger = MemoryLedger()
    ledger.open_job(JOB, total_groups=1, total_files=1, results_location="", now=0.0)
    store, events, clock = MemoryStore(), RecordingEvents(), FakeClock()

    class SlowFetcher(FakeFetcher):
        def fetch(self, source, dest, **kwargs):
            clock.now += 100.0  # the download eats the invocation's time
            return super().fetch(source, dest, **kwargs)

    module = faked_worker(SlowFetcher({"https://o.example/0": b"data0"}), ledger=ledger, events=events, store=store,
                          clock=clock)
    # WHEN the batch is handled with 60 s left
    with pytest.raises(BatchProcessingError):  # its only record comes back: the invocation fails (Powertools)
        module.handler(sqs_event([_message(0)]), FakeLambdaContext(remaining_ms=60_000))
    # THEN the verdict is counted, the finish deferred: nothing written, nothing announced
    assert ledger.get_job(JOB).finished_at is not None and events.finished == [] and store.objects.keys() == {
        "k/0.bin"}
    # WHEN it is redelivered to an invocation with time; THEN the job is announced once
    module._app.ctx.fetcher.__class__ = FakeFetcher
    assert module.handler(sqs_event([_message(0)]), FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(events.finished) == 1


class HalfQueue(MemoryQueue):
    """SendMessageBatch fails part-way: only the first ``accepts`` bodies of a call get through."""

    def __init__(self, accepts: int):
        super().__init__()
        self.accepts = accepts

    def send_messages(self, bodies):
        self.bodies.extend(bodies[: self.accepts])
        raise EnqueueError("SendMessageBatch: ServiceUnavailable", sent=self.accepts,
                           failed=len(bodies) - self.accepts)


def test_a_job_enqueued_only_in_part_finishes_once_the_producer_is_invoked_again(faked_worker):
    # GIVEN a job of four groups whose producer sent only two before SendMessageBatch failed
    job = Job(job_id=JOB, groups=tuple(numbered_group(i) for i in range(4)))
    ledger, store, events = MemoryLedger(), MemoryStore(), RecordingEvents()
    half = HalfQueue(accepts=2)
    with pytest.raises(EnqueueError):
        enqueue_job(job, half, ledger=ledger)
    module = faked_worker(FakeFetcher({f"https://o.example/{i}": b"data%d" % i for i in range(4)}),
                          ledger=ledger, events=events, store=store)
    module.handler(sqs_event(half.bodies), FakeLambdaContext())
    # THEN the job waits: two of four groups have a verdict, nothing is announced
    assert (ledger.get_job(JOB).done, ledger.get_job(JOB).total_groups) == (2, 4) and events.finished == []
    # WHEN the producer is invoked again with the same manifest (same job id) and the workers drain the queue
    again = MemoryQueue()
    assert enqueue_job(job, again, ledger=ledger).messages == 4
    assert module.handler(sqs_event(again.bodies), FakeLambdaContext()) == {"batchItemFailures": []}
    # THEN the two sent before are duplicates (not counted), the job finishes and is announced exactly once
    finished = ledger.get_job(JOB)
    assert (finished.done, finished.ok) == (4, 4) and finished.announced_at is not None
    assert len(events.finished) == 1

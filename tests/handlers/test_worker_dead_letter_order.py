"""The order of a final failure's bookkeeping: failure record, ledger count, then the DLQ send. Whatever step is
refused, the record comes back having sent nothing that its redelivery would send again (no duplicate DLQ
message), and a failure counted but not yet dead-lettered comes back too (it does not vanish)."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from fanfetch.core.messages import encode_message
from fanfetch.errors import EnqueueError, PermanentFetchError, RetryableLedgerError
from tests.conftest import FakeLambdaContext, sqs_event
from tests.fakes import FakeFetcher, MemoryLedger, MemoryStore, RecordingEvents
from tests.handlers.conftest import numbered_group

JOB = "job-order"


class Ledger(MemoryLedger):
    """A MemoryLedger that is down (refuses verdicts) while ``down`` is set."""

    def __init__(self):
        super().__init__()
        self.down = False

    def record_group(self, record):
        if self.down:
            raise RetryableLedgerError(f"record {record.group_id}: ServiceUnavailable")
        return super().record_group(record)


class DeadLetters:
    """The DLQ: what was sent; the next ``failing`` sends raise as SqsQueue does when SendMessage fails."""

    def __init__(self, failing: int = 0):
        self.sent: list[tuple[str, dict]] = []
        self.failing = failing

    def dead_letter(self, body, reason):
        if self.failing:
            self.failing -= 1
            raise EnqueueError("could not dead-letter a message: ServiceUnavailable", sent=0, failed=1)
        self.sent.append((body, dict(reason)))


def _set_up(faked_worker, *, dead_letters):
    # a job of two groups: g0 is stored, g1's file is gone (404: dead-lettered on first sight)
    ledger, store, events = Ledger(), MemoryStore(), RecordingEvents()
    ledger.open_job(JOB, total_groups=2, total_files=2, results_location="s3://b/_jobs/x/results.jsonl", now=0.0)
    gone = PermanentFetchError("https://o.example/1", "HTTP 404", status=404)
    fetcher = FakeFetcher({"https://o.example/0": b"data0", "https://o.example/1": gone})
    module = faked_worker(fetcher, ledger=ledger, events=events, store=store, dead_letters=dead_letters)
    return module, ledger, store, events, sqs_event([encode_message(JOB, numbered_group(i)) for i in range(2)])


def test_a_failure_whose_count_is_refused_is_not_dead_lettered_until_it_is_counted(faked_worker):
    dlq = DeadLetters()
    module, ledger, store, events, event = _set_up(faked_worker, dead_letters=dlq)
    # GIVEN the ledger is down while the batch is handled
    ledger.down = True
    # WHEN the batch is handled / THEN both records come back (Powertools raises when all failed); the failure
    # record is written, nothing is sent
    with pytest.raises(BatchProcessingError):
        module.handler(event, FakeLambdaContext())
    assert "_jobs/job-order/failed/g1.json" in store.objects
    assert dlq.sent == []
    # WHEN they come back with the ledger up / THEN both are counted and the 404 is dead-lettered once, with reason
    ledger.down = False
    assert module.handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    ((body, reason),) = dlq.sent
    assert body == event["Records"][1]["body"] and "404" in reason["fanfetch-error"]
    assert reason["fanfetch-failure-record"] == "_jobs/job-order/failed/g1.json"
    job = ledger.get_job(JOB)
    assert (job.ok, job.failed) == (1, 1) and len(events.finished) == 1


def test_a_counted_failure_whose_dlq_send_fails_comes_back_and_is_sent_once_without_a_second_count(faked_worker):
    dlq = DeadLetters(failing=1)
    module, ledger, store, events, event = _set_up(faked_worker, dead_letters=dlq)
    # WHEN the batch is handled and the DLQ send fails
    response = module.handler(event, FakeLambdaContext())
    # THEN the failure is counted (the job is finished and announced) but its record comes back: not acknowledged
    # before it is in the DLQ
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    job = ledger.get_job(JOB)
    assert (job.ok, job.failed) == (1, 1) and len(events.finished) == 1
    assert dlq.sent == []
    # WHEN it comes back / THEN it is sent once; the ledger sees a duplicate (not counted again, no second event)
    redelivered = {"Records": [event["Records"][1]]}
    assert module.handler(redelivered, FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(dlq.sent) == 1
    job = ledger.get_job(JOB)
    assert (job.ok, job.failed) == (1, 1) and len(events.finished) == 1

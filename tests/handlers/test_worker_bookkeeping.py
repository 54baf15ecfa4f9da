"""The worker's bookkeeping invariant: a record is acknowledged only once its verdict is in the ledger.
A ledger outage in the middle of a batch must send exactly the uncounted records back."""

from __future__ import annotations

from fanfetch.core.messages import encode_message
from fanfetch.errors import RetryableLedgerError
from tests.conftest import FakeLambdaContext, sqs_event
from tests.fakes import FakeFetcher, MemoryLedger, MemoryStore, RecordingEvents
from tests.handlers.conftest import numbered_group

JOB = "job-outage"


class LedgerWithOutage(MemoryLedger):
    """A MemoryLedger that refuses the verdicts of ``down_for`` groups (DynamoDB unavailable for those calls)."""

    def __init__(self, down_for: set[str]):
        super().__init__()
        self.down_for = down_for

    def record_group(self, record):
        if record.group_id in self.down_for:
            raise RetryableLedgerError(f"record {record.group_id}: ServiceUnavailable")
        return super().record_group(record)


def _message(i: int) -> str:
    return encode_message(JOB, numbered_group(i))


def test_a_verdict_the_ledger_rejected_comes_back_and_the_counted_ones_are_acknowledged(faked_worker):
    # GIVEN a job of three groups, all downloadable, and a ledger that is down for g1's verdict only
    ledger = LedgerWithOutage(down_for={"g1"})
    ledger.open_job(JOB, total_groups=3, total_files=3, results_location="s3://b/_jobs/x/results.jsonl", now=0.0)
    store = MemoryStore()
    module = faked_worker(FakeFetcher({f"https://o.example/{i}": b"data%d" % i for i in range(3)}),
                          ledger=ledger, events=RecordingEvents(), store=store)
    event = sqs_event([_message(i) for i in range(3)])
    # WHEN the batch is handled
    response = module.handler(event, FakeLambdaContext())
    # THEN the output was stored, but the uncounted record comes back (to be counted on redelivery)
    assert store.objects["k/1.bin"] == b"data1"
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    # AND the ledger holds exactly the two verdicts it accepted; the job is not finished
    assert sorted(g.group_id for g in ledger.list_groups(JOB)) == ["g0", "g2"]
    assert ledger.get_job(JOB).finished_at is None

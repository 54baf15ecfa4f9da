"""Bookkeeping order in the services: a job is opened in the ledger before any of its messages is sent,
and a group's most telling failure (permanent) decides its verdict whatever order its files fail in."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.app.services import GroupContext, enqueue_job, process_group
from fanfetch.core.models import Group, GroupStatus, Job, MergeMode, Source
from fanfetch.errors import PermanentFetchError, RetryableFetchError, RetryableLedgerError
from tests.fakes import FakeClock, FakeFetcher, MemoryLedger, MemoryQueue, MemoryStore

H = "https://origin.example"


def _job(n: int = 3) -> Job:
    groups = tuple(Group(group_id=f"g{i}", sources=(Source(f"{H}/{i}"),), key=f"k/{i}", merge=MergeMode.CONCAT)
                   for i in range(n))
    return Job(job_id="j1", groups=groups)


class _Journal:
    def __init__(self):
        self.steps: list[str] = []


class _JournalLedger(MemoryLedger):
    def __init__(self, journal: _Journal, fail: bool = False):
        super().__init__()
        self.journal, self.fail = journal, fail

    def open_job(self, job_id, **kwargs):
        self.journal.steps.append("open")
        if self.fail:
            raise RetryableLedgerError("open job: ProvisionedThroughputExceeded")
        return super().open_job(job_id, **kwargs)


class _JournalQueue(MemoryQueue):
    def __init__(self, journal: _Journal):
        super().__init__()
        self.journal = journal

    def send_messages(self, bodies):
        self.journal.steps.append("send")
        return super().send_messages(bodies)


def test_the_job_is_opened_before_its_first_message_is_sent():
    # GIVEN a ledger and a queue writing to one journal
    journal = _Journal()
    ledger, queue = _JournalLedger(journal), _JournalQueue(journal)
    # WHEN a job is enqueued
    enqueue_job(_job(), queue, ledger=ledger, results_location="s3://b/r", now=lambda: 5.0)
    # THEN the ledger heard of the job first, with its totals
    assert journal.steps[0] == "open" and "send" in journal.steps
    assert ledger.get_job("j1").total_groups == 3


def test_a_job_the_ledger_cannot_open_sends_nothing():
    # GIVEN a ledger that is unavailable
    journal = _Journal()
    queue = _JournalQueue(journal)
    # WHEN the job is enqueued / THEN it fails and not one message reached the queue (no verdict without a job)
    with pytest.raises(RetryableLedgerError):
        enqueue_job(_job(), queue, ledger=_JournalLedger(journal, fail=True), results_location="s3://b/r")
    assert queue.bodies == [] and journal.steps == ["open"]


class _PermanentAfterRetryable(FakeFetcher):
    """Both files start; ``/a`` then fails with a 503, and ``/b`` with a 404 only after that, so the
    group's first failure to finish is the retryable one."""

    def __init__(self):
        super().__init__({f"{H}/a": b"", f"{H}/b": b""})
        self.permanent_started = threading.Event()
        self.retryable_raised = threading.Event()

    def fetch(self, source, dest, *, deadline=None, validator=None, digest=False):
        if source.url.endswith("/a"):
            assert self.permanent_started.wait(timeout=30)
            self.retryable_raised.set()
            raise RetryableFetchError(source.url, "HTTP 503", status=503)
        self.permanent_started.set()
        assert self.retryable_raised.wait(timeout=30)
        raise PermanentFetchError(source.url, "HTTP 404", status=404)


def test_a_404_and_a_503_in_one_group_make_the_group_permanent():
    # GIVEN a group whose first file answers 503 and whose second answers 404 a moment later
    group = Group(group_id="s1", sources=(Source(f"{H}/a"), Source(f"{H}/b")), key="k/s1", merge=MergeMode.CONCAT)
    with ThreadPoolExecutor(max_workers=4) as pool:
        ctx = GroupContext(fetcher=_PermanentAfterRetryable(), store=MemoryStore(), files=pool, clock=FakeClock())
        # WHEN the group is processed
        result = process_group(group, ctx)
    # THEN it failed permanently, naming the 404: retrying cannot bring the missing file back
    assert result.status is GroupStatus.FAILED and not result.retryable
    assert "HTTP 404" in (result.error or "")

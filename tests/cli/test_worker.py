"""The long-running worker's poll loop (through the SQS receiver adapter) against a recording SQS client fake: what
it deletes, leaves, hands back, and when it stops; and the visibility heartbeat."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanfetch.adapters.sqs_receive import SqsReceiver
from fanfetch.app.services import GroupContext
from fanfetch.cli.worker import Heartbeat, PollSettings, QueuePoller
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.errors import InputError, PermanentFetchError, RetryableFetchError
from tests.fakes import FakeClock, FakeFetcher, MemoryStore

H = "https://origin.example"


class FakeSqs:
    """Serves prepared receive answers (then empty ones, each "waiting" WaitTimeSeconds on the fake clock)."""

    def __init__(self, batches, clock: FakeClock, *, visibility: str = "30", on_receive=None):
        self.batches = list(batches)
        self.clock = clock
        self.visibility = visibility
        self.on_receive = on_receive
        self.receives: list[dict] = []
        self.deleted: list[str] = []
        self.visibility_changes: list[tuple[str, int]] = []
        self.changed = threading.Event()

    def get_queue_attributes(self, QueueUrl, AttributeNames):  # noqa: N803 (boto3's names)
        return {"Attributes": {"VisibilityTimeout": self.visibility}}

    def receive_message(self, **kwargs):
        self.receives.append(kwargs)
        if self.on_receive:
            self.on_receive()
        if self.batches:
            return {"Messages": self.batches.pop(0)}
        self.clock.advance(kwargs["WaitTimeSeconds"])
        return {}

    def delete_message_batch(self, QueueUrl, Entries):  # noqa: N803
        self.deleted.extend(e["ReceiptHandle"] for e in Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def change_message_visibility_batch(self, QueueUrl, Entries):  # noqa: N803
        self.visibility_changes.extend((e["ReceiptHandle"], e["VisibilityTimeout"]) for e in Entries)
        self.changed.set()
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


class RecordingDeadLetters:
    def __init__(self):
        self.letters: list[tuple[str, dict]] = []

    def dead_letter(self, body, reason):
        self.letters.append((body, dict(reason)))


def _message(gid: str, receive_count: int = 1) -> dict:
    group = Group(group_id=gid, sources=(Source(f"{H}/{gid}"),), key=f"out/{gid}.csv", merge=MergeMode.CONCAT)
    return {"MessageId": f"id-{gid}", "ReceiptHandle": f"rh-{gid}", "Body": encode_message("job", group),
            "Attributes": {"ApproximateReceiveCount": str(receive_count)}}


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _poller(sqs, fetcher, store, pool, clock, **settings):
    ctx = GroupContext(fetcher=fetcher, store=store, files=pool, clock=clock)
    dead = RecordingDeadLetters()
    poll = PollSettings(**({"wait_time_s": 2, "idle_exit_s": 5} | settings))
    return QueuePoller(SqsReceiver(sqs, "https://queue"), ctx, settings=poll, dead_letters=dead, clock=clock), dead


def test_done_and_dead_lettered_records_are_deleted_and_transient_failures_are_left_to_come_back(pool):
    # GIVEN one batch: a good group, one whose origin is busy (503), one whose file is gone (404)
    clock = FakeClock()
    sqs = FakeSqs([[_message("good"), _message("busy"), _message("gone")]], clock)
    fetcher = FakeFetcher({f"{H}/good": b"data", f"{H}/busy": RetryableFetchError(f"{H}/busy", "503", status=503),
                           f"{H}/gone": PermanentFetchError(f"{H}/gone", "404", status=404)})
    store = MemoryStore()
    poller, dead = _poller(sqs, fetcher, store, pool, clock)

    # WHEN the worker runs until it has been idle for 5 s
    summary = poller.run()

    # THEN the good one is stored and deleted, the 404 is dead-lettered with its reason and deleted, and the
    # busy one is neither deleted nor made visible early: it returns after the visibility timeout
    assert store.objects["out/good.csv"] == b"data"
    assert sorted(sqs.deleted) == ["rh-gone", "rh-good"]
    assert [reason["fanfetch-error-type"] for _, reason in dead.letters] == ["permanent"]
    assert all(timeout != 0 for _, timeout in sqs.visibility_changes)
    assert (summary.reason, summary.received, summary.deleted, summary.returned, summary.dead_lettered) == (
        "idle", 3, 2, 1, 1)
    # ... and it long-polled for batches of 10 with the receive count it needs for the last-delivery rule
    assert sqs.receives[0]["MaxNumberOfMessages"] == 10 and sqs.receives[0]["WaitTimeSeconds"] == 2
    assert "ApproximateReceiveCount" in sqs.receives[0]["MessageSystemAttributeNames"]


def test_a_transient_failure_on_its_last_delivery_is_dead_lettered_not_returned(pool):
    clock = FakeClock()
    sqs = FakeSqs([[_message("busy", receive_count=3)]], clock)
    fetcher = FakeFetcher({f"{H}/busy": RetryableFetchError(f"{H}/busy", "503", status=503)})
    poller, dead = _poller(sqs, fetcher, MemoryStore(), pool, clock, max_receive_count=3)
    summary = poller.run()
    assert sqs.deleted == ["rh-busy"] and len(dead.letters) == 1 and summary.returned == 0


def test_messages_received_after_a_stop_request_are_handed_back_untouched(pool):
    # GIVEN a stop (SIGTERM) that arrives while a long poll is waiting, which then returns a message
    clock = FakeClock()
    stop = threading.Event()
    sqs = FakeSqs([[_message("late")]], clock, on_receive=stop.set)
    fetcher = FakeFetcher({f"{H}/late": b"x"})
    ctx = GroupContext(fetcher=fetcher, store=MemoryStore(), files=pool, clock=clock)
    poller = QueuePoller(SqsReceiver(sqs, "https://queue"), ctx, settings=PollSettings(wait_time_s=20), stop=stop,
                         clock=clock)

    # WHEN the worker runs
    summary = poller.run()

    # THEN it made the message visible again at once, fetched nothing, deleted nothing, and stopped
    assert sqs.visibility_changes == [("rh-late", 0)]
    assert fetcher.calls == {} and sqs.deleted == []
    assert (summary.reason, summary.released) == ("stopped", 1)


def test_max_messages_bounds_what_is_received(pool):
    clock = FakeClock()
    sqs = FakeSqs([[_message("a"), _message("b"), _message("c")]], clock)
    fetcher = FakeFetcher({f"{H}/{g}": b"x" for g in "abc"})
    poller, _ = _poller(sqs, fetcher, MemoryStore(), pool, clock, max_messages=3, idle_exit_s=None)
    summary = poller.run()
    assert sqs.receives[0]["MaxNumberOfMessages"] == 3
    assert (summary.reason, summary.received, len(sqs.receives)) == ("max-messages", 3, 1)


def test_a_missing_queue_is_an_input_error():
    class NoQueue(FakeSqs):
        def get_queue_attributes(self, QueueUrl, AttributeNames):  # noqa: N803
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "GetQueueAttributes")

    ctx = GroupContext(fetcher=FakeFetcher({}), store=MemoryStore(), files=None, clock=FakeClock())
    with pytest.raises(InputError, match="does not exist"):
        QueuePoller(SqsReceiver(NoQueue([], FakeClock()), "https://gone"), ctx, settings=PollSettings(),
                    clock=FakeClock()).run()


def test_the_heartbeat_keeps_extending_the_batchs_visibility_until_the_batch_ends():
    # GIVEN a batch of two messages in flight with a 30 s visibility timeout
    sqs = FakeSqs([], FakeClock())
    # WHEN a heartbeat runs until it has extended them twice
    with Heartbeat(SqsReceiver(sqs, "https://queue"), ["rh-1", "rh-2"], visibility_s=30, interval_s=0.01) as beat:
        for _ in range(2):
            assert sqs.changed.wait(5)
            sqs.changed.clear()
    beats = beat.beats
    # THEN every beat extended both messages to the full timeout, and none follows the end of the batch
    assert beats >= 2
    assert set(sqs.visibility_changes) == {("rh-1", 30), ("rh-2", 30)}
    assert len(sqs.visibility_changes) == 2 * beat.beats


def test_bad_poll_settings_are_refused_with_every_problem_named():
    with pytest.raises(InputError, match="wait time.*batch size"):
        PollSettings(wait_time_s=21, batch_size=11)

"""The partial-batch response contract, checked over random batches: Lambda must never read
"all succeeded" while a record failed (wrong key, None, an id not in the batch, a missing id)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanfetch.app.services import GroupContext
from fanfetch.bootstrap.worker import WorkerApp
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.errors import PermanentFetchError, RetryableFetchError
from fanfetch.settings import Settings
from tests.conftest import FakeLambdaContext, load_handler, sqs_event
from tests.fakes import FakeClock, FakeFetcher, MemoryStore

MAX_RECEIVES = 3
OUTCOMES = ("ok", "permanent", "retryable", "poison")


class RecordingDeadLetters:
    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def dead_letter(self, body, reason):
        self.sent.append((body, dict(reason)))


@pytest.fixture(scope="module")
def module():
    return load_handler("worker")


@pytest.fixture(scope="module")
def files():
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def _body(i: int, outcome: str) -> str:
    if outcome == "poison":
        return '{"v": 1, "job": "j"}'
    group = Group(group_id=f"g{i}", sources=(Source(f"https://o.example/{outcome}/{i}"),), key=f"k/{i}.csv",
                  merge=MergeMode.CONCAT)
    return encode_message("j", group)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    outcomes=st.lists(st.tuples(st.sampled_from(OUTCOMES), st.integers(1, 4)), min_size=1, max_size=10),
    with_dlq=st.booleans(),
)
def test_exactly_the_records_that_must_come_back_are_reported(module, files, outcomes, with_dlq):
    # GIVEN a batch whose records succeed, fail permanently, fail transiently or are poison, at various deliveries
    bodies_plan = {}
    for i, (outcome, _) in enumerate(outcomes):
        url = f"https://o.example/{outcome}/{i}"
        bodies_plan[url] = {"ok": b"data", "permanent": PermanentFetchError(url, "HTTP 404", status=404),
                            "retryable": RetryableFetchError(url, "HTTP 503", status=503)}.get(outcome, b"")
    dead_letters = RecordingDeadLetters() if with_dlq else None
    ctx = GroupContext(fetcher=FakeFetcher(bodies_plan), store=MemoryStore(), files=files, clock=FakeClock())
    module._app = WorkerApp(settings=Settings(bucket_name="b", max_receive_count=MAX_RECEIVES, deadline_reserve_s=0),
                            ctx=ctx, dead_letters=dead_letters)
    event = sqs_event([_body(i, outcome) for i, (outcome, _) in enumerate(outcomes)])
    for record, (_, receives) in zip(event["Records"], outcomes, strict=True):
        record["attributes"]["ApproximateReceiveCount"] = str(receives)
    ids = [r["messageId"] for r in event["Records"]]

    def must_come_back(outcome: str, receives: int) -> bool:
        if outcome == "ok":
            return False
        if not with_dlq:
            return True
        return outcome == "retryable" and receives < MAX_RECEIVES

    expected = [mid for mid, (o, n) in zip(ids, outcomes, strict=True) if must_come_back(o, n)]
    # WHEN the handler answers
    if len(expected) == len(ids):
        # THEN when every record must come back, the invocation fails as a whole (Powertools' rule)
        with pytest.raises(BatchProcessingError):
            module.handler(event, FakeLambdaContext())
        return
    response = module.handler(event, FakeLambdaContext())
    # THEN the answer has exactly the documented shape, naming exactly the records that must come back
    assert isinstance(response, dict) and list(response) == ["batchItemFailures"]
    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert all(set(f) == {"itemIdentifier"} for f in response["batchItemFailures"])
    assert set(reported) <= set(ids) and len(reported) == len(set(reported))
    assert sorted(reported) == sorted(expected)
    # AND every record that is neither done nor coming back was dead-lettered with a reason
    if with_dlq:
        lost = [o for (o, n) in outcomes if o != "ok" and not must_come_back(o, n)]
        assert len(dead_letters.sent) == len(lost)
        assert all(reason["fanfetch-error"] for _, reason in dead_letters.sent)

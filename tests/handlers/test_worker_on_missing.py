"""The worker Lambda's missing-file policy: FANFETCH_ON_MISSING (the stack's onMissing) for messages that
name none, the message's own on_missing otherwise; a bad value is named at the first invocation."""

from __future__ import annotations

import pytest

from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, OnMissing, Source
from fanfetch.errors import InputError
from fanfetch.settings import Settings
from tests.conftest import FakeLambdaContext, sqs_event


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"FANFETCH_ON_MISSING": "skip"}


def _message(origin, group_id: str, on_missing: OnMissing | None = None) -> str:
    urls = tuple(Source(origin.url_template.format(station_id=1000, year=y)) for y in (2000, 1800, 2001))
    return encode_message("job7", Group(group_id, urls, f"{group_id}.csv", MergeMode.CSV, on_missing=on_missing))


def test_the_environment_default_skips_and_a_message_naming_fail_keeps_failing(worker):
    # GIVEN FANFETCH_ON_MISSING=skip, one message without a policy and one naming on_missing=fail
    module, s3, sqs, dlq, origin = worker
    event = sqs_event([_message(origin, "dflt"), _message(origin, "strict", OnMissing.FAIL)])
    # WHEN handled
    response = module.handler(event, FakeLambdaContext())
    # THEN the first is stored from its two real years; the second fails on the 404 and is dead-lettered
    assert response == {"batchItemFailures": []}
    body = s3.get_object(Bucket="out", Key="dflt.csv")["Body"].read().decode()
    assert "2000" in body and "2001" in body
    (dead,) = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert '"strict"' in dead["Body"] and "404" in dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    assert "Contents" not in s3.list_objects_v2(Bucket="out", Prefix="strict.csv")


def test_a_bad_fanfetch_on_missing_is_named():
    with pytest.raises(InputError, match="FANFETCH_ON_MISSING='ignore'"):
        Settings.from_env({"FANFETCH_ON_MISSING": "ignore"})
    assert Settings.from_env({}).on_missing == "fail"

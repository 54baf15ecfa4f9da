"""The v1 message schema: round trip, size limit, and poison detection."""

from __future__ import annotations

import json

import pytest

from fanfetch.core.messages import SQS_MAX_MESSAGE_BYTES, decode_message, encode_job, encode_message
from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.errors import InputError, MessageError


def _group(urls=("https://h.example/a.csv", "https://h.example/b.csv"), **kw) -> Group:
    base = dict(group_id="50430", sources=tuple(Source(u) for u in urls), key="stations/50430.csv",
                merge=MergeMode.CSV)
    base.update(kw)
    return Group(**base)


def test_round_trip_keeps_every_field_and_integrity_checks():
    # GIVEN a group with a sha256 on its second URL
    group = _group(sources=(Source("https://h.example/a"), Source("https://h.example/b", sha256="ab" * 32, size=9)))
    # WHEN it is encoded and decoded
    message = decode_message(encode_message("job1", group))
    # THEN the same job and group come back
    assert message.job_id == "job1"
    assert message.group == group


def test_body_is_versioned_json_with_the_documented_fields():
    body = json.loads(encode_message("job1", _group()))
    assert body == {"v": 1, "job": "job1", "group": "50430", "key": "stations/50430.csv", "merge": "csv",
                    "urls": ["https://h.example/a.csv", "https://h.example/b.csv"]}


def test_a_group_too_big_for_one_sqs_message_is_refused_by_name_before_anything_is_sent():
    # GIVEN one small group and one group of 3,000 long URLs (> 256 KiB)
    big = _group(group_id="huge", urls=tuple(f"https://h.example/{'x' * 100}/{i}.csv" for i in range(3000)))
    # WHEN the job is encoded
    with pytest.raises(InputError) as caught:
        encode_job("job1", [_group(), big])
    # THEN the error names the group and the limit
    assert "'huge'" in str(caught.value) and f"{SQS_MAX_MESSAGE_BYTES:,}" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 2, "job": "j", "group": "g", "key": "k", "merge": "csv", "urls": ["https://a/b"]}', "version"),
        ('{"v": 1, "group": "g", "key": "k", "merge": "csv", "urls": ["https://a/b"]}', "'job'"),
        ('{"v": 1, "job": "j", "group": "g", "key": "k", "merge": "csv", "urls": []}', "urls"),
        ('{"v": 1, "job": "j", "group": "g", "key": "k", "merge": "zip", "urls": ["https://a/b"]}', "merge mode"),
        ('{"v": 1, "job": "j", "group": "g", "key": "k", "merge": "csv", "urls": ["file:///etc/passwd"]}', "scheme"),
        ('{"v": 1, "job": "j", "group": "g", "key": "../up", "merge": "csv", "urls": ["https://a/b"]}', "segment"),
        ('{"v": 1, "job": "j", "group": "g", "key": "/abs", "merge": "csv", "urls": ["https://a/b"]}', "relative"),
    ],
)
def test_poison_messages_raise_message_error_naming_the_problem(body, reason):
    with pytest.raises(MessageError) as caught:
        decode_message(body)
    assert reason in str(caught.value)

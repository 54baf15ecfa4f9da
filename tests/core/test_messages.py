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


_GOOD = {"v": 1, "job": "j", "group": "g", "key": "k.csv", "merge": "csv", "urls": ["https://a.example/b"]}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"checks": [{"sha256": "not-hex"}]}, "sha256 must be 64 hex digits"),
        ({"checks": [{"md5": "ab"}]}, "md5 must be 32 hex digits"),
        ({"checks": [{"size": "999"}]}, "size must be a non-negative integer"),
        ({"checks": [{"size": -1}]}, "size must be a non-negative integer"),
        ({"checks": [{"size": True}]}, "size must be a non-negative integer"),
        ({"checks": [{"sha1": "ab"}]}, "unknown field 'sha1'"),
        ({"checks": ["abc"]}, "entries must be objects or null"),
        ({"checks": {"size": 1}}, "must be a list lining up"),
        ({"checks": [None, None]}, "must be a list lining up"),
    ],
)
def test_malformed_checks_are_poison_naming_the_field(change, reason):
    # GIVEN a message whose integrity facts are malformed (they were retried to exhaustion or dropped before)
    body = json.dumps(_GOOD | change)
    # WHEN decoded / THEN it is poison, the reason names the field and the URL's position
    with pytest.raises(MessageError) as caught:
        decode_message(body)
    assert reason in str(caught.value)


@pytest.mark.parametrize("field", ["job", "group", "key"])
def test_a_lone_surrogate_in_an_id_or_key_is_poison(field):
    # GIVEN a JSON escape that decodes to an unpaired surrogate (it can never be UTF-8, an S3 key or a path)
    body = json.dumps(_GOOD).replace(f'"{field}": "{_GOOD[field]}"', f'"{field}": "x\\ud800y"')
    assert "\\ud800" in body
    # WHEN decoded / THEN poison, naming the problem
    with pytest.raises(MessageError) as caught:
        decode_message(body)
    assert "surrogate" in str(caught.value)


def test_a_lone_surrogate_in_a_url_and_undecodable_bytes_are_poison():
    with pytest.raises(MessageError, match="surrogate"):
        decode_message(json.dumps(_GOOD | {"urls": ["https://a.example/\ud800"]}, ensure_ascii=True))
    with pytest.raises(MessageError, match="not UTF-8"):
        decode_message(json.dumps(_GOOD).encode() + b"\xff\xfe")
    with pytest.raises(MessageError, match="surrogate"):
        decode_message('{"v": 1, "job": "\ud800"}')  # a str that is not UTF-8-encodable at all


def test_well_formed_checks_still_round_trip_including_a_size_of_zero():
    group = _group(sources=(Source("https://h.example/a", size=0), Source("https://h.example/b", md5="AB" * 16)))
    message = decode_message(encode_message("job1", group))
    assert message.group.sources[0].size == 0 and message.group.sources[1].md5 == "ab" * 16


def test_on_missing_travels_in_the_message_only_when_the_group_names_it():
    from fanfetch.core.models import OnMissing

    skip = _group(on_missing=OnMissing.SKIP)
    assert json.loads(encode_message("j", skip))["on_missing"] == "skip"
    assert decode_message(encode_message("j", skip)).group.on_missing is OnMissing.SKIP
    assert "on_missing" not in json.loads(encode_message("j", _group()))
    assert decode_message(encode_message("j", _group())).group.on_missing is None


@pytest.mark.parametrize("value", ["ignore", 1, True, ["skip"]])
def test_a_bad_on_missing_in_a_message_is_poison(value):
    with pytest.raises(MessageError, match="on_missing"):
        decode_message(json.dumps(_GOOD | {"on_missing": value}))

"""AWS limits checked at validation (fanfetch/core/limits.py): characters SQS refuses, S3's 1,024-byte keys
counted in UTF-8 bytes with the output prefix, DynamoDB's 1,024-byte sort keys (group ids) — one line each,
naming file, line and field, before anything is enqueued."""

from __future__ import annotations

import json

import pytest

from fanfetch.core.bookkeeping import failure_record_key
from fanfetch.core.limits import RESERVED_JOB_ID_BYTES, S3_MAX_KEY_BYTES, first_sqs_refused
from fanfetch.core.manifest import parse_groups, parse_manifest
from fanfetch.core.spec import parse_spec
from fanfetch.errors import ManifestError

URL = "https://example.org/a.csv"


def _error(records: list[dict], **kwargs: object) -> ManifestError:
    data = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, source="m.jsonl", **kwargs)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize("char", ["\ufffe", "\uffff", "\x0b", "\x1f"])
@pytest.mark.parametrize(("field", "record"), [
    ("group", lambda c: {"group": f"g{c}1", "urls": [URL]}),
    ("key", lambda c: {"group": "g", "urls": [URL], "key": f"out/{c}.csv"}),
    ("urls[0]", lambda c: {"group": "g", "urls": [f"https://example.org/{c}"]}),
])
def test_a_character_sqs_refuses_is_rejected_at_validation_naming_line_and_field(char, field, record):
    # GIVEN a manifest whose second line carries a character SQS would refuse in the group's message
    error = _error([{"group": "ok", "urls": [URL]}, record(char)])
    # THEN one line: file, line, field (control characters may be named by the older, stricter rules)
    assert str(error).startswith(f"m.jsonl:2: {field}: ") and "\n" not in str(error)
    if char in "\ufffe\uffff":
        assert f"U+{ord(char):04X}" in str(error) and "SQS" in str(error)


def test_the_sqs_character_rule_is_xml_chars():
    assert [first_sqs_refused(t) for t in ("\t\n\r ~", "\ud7ff\ue000\ufffd", "\U00010000\U0010ffff")] == [None] * 3
    refused = ["\x00", "\x08", "\ufffe", "\uffff"]
    assert [first_sqs_refused(f"a{c}") for c in refused] == refused


def test_a_group_id_is_limited_in_utf8_bytes_not_characters():
    # GIVEN a 200-character group id of 3-byte characters (600 bytes: DynamoDB's and S3's count)
    error = _error([{"group": "€" * 200, "urls": [URL]}])
    # THEN it is refused, naming its size in bytes; 512 ASCII characters pass
    assert str(error).startswith("m.jsonl:1: group: group id is 600 bytes in UTF-8, over the 512 limit")
    assert parse_groups([{"group": "g" * 512, "urls": [URL], "key": "k.csv"}]).groups[0].group_id == "g" * 512


def test_an_output_key_counts_the_output_prefix_in_bytes():
    # GIVEN a key of 1,004 bytes (five folders of 100 two-byte characters; a file name stays <= 255 bytes)
    key = "/".join(["é" * 100] * 5)
    assert parse_groups([{"group": "g", "urls": [URL], "key": key}]).groups[0].key == key
    # WHEN the output prefix is 30 bytes / THEN it is refused, naming the bytes with the prefix
    prefix = "p" * 29 + "/"
    with pytest.raises(ManifestError) as info:
        parse_groups([{"group": "g", "urls": [URL], "key": key}], source="event.groups", key_prefix=prefix)
    assert str(info.value).startswith("event.groups:1: key: output key ")
    assert f"is {1004 + 30:,} bytes in UTF-8 with the output prefix" in str(info.value)


def test_merge_none_counts_the_longest_file_name_and_the_done_marker():
    # GIVEN a merge-none folder key that fits alone but not with the file stored below it
    key = "/".join(["k" * 200] * 5) + "/"  # 1,005 bytes, no component over 255
    long_name = "n" * 40 + ".csv"
    error = _error([{"group": "g", "urls": [f"https://example.org/{long_name}"], "key": key, "merge": "none"}])
    assert str(error).startswith("m.jsonl:1: key: output key ") and f"{1005 + len(long_name):,} bytes" in str(error)


def test_a_group_id_too_long_for_its_failure_record_below_the_prefix_is_refused():
    # GIVEN a 60-byte group id of capitals, each encoded as %XX in its failure record's name (180 characters),
    # and an output prefix of 770 bytes: 60 bytes would fit, the key the worker writes would not
    group_id = "G" * 60
    prefix = "p" * 769 + "/"
    # WHEN it is validated
    with pytest.raises(ManifestError) as info:
        parse_groups([{"group": group_id, "urls": [URL], "key": "k.csv"}], key_prefix=prefix)
    # THEN its failure record key _jobs/<job>/failed/<group>.json, measured as the worker names it, is over S3's
    # limit: refused by the group field
    assert str(info.value).startswith("event:1: group: group id is too long for its failure record key")
    assert str(S3_MAX_KEY_BYTES) in str(info.value).replace(",", "")
    assert len(prefix + failure_record_key("j" * RESERVED_JOB_ID_BYTES, group_id)) > S3_MAX_KEY_BYTES


def test_a_long_group_id_whose_encoded_failure_record_fits_is_accepted():
    # GIVEN a 512-byte group id (fine for DynamoDB): its failure record's name is a 183-character digest form
    group_id = "g" * 512
    # WHEN it is validated below a 500-byte prefix / THEN it is accepted: the worker's key fits S3's limit
    job = parse_groups([{"group": group_id, "urls": [URL], "key": "k.csv"}], key_prefix="p" * 499 + "/")
    assert job.groups[0].group_id == group_id
    assert 500 + len(failure_record_key("j" * RESERVED_JOB_ID_BYTES, group_id)) <= S3_MAX_KEY_BYTES


def test_a_spec_rendering_a_refused_character_names_the_template_line():
    spec = {"job": {"url": "https://example.org/{s}", "group": "{s}"}, "table": {"rows": [{"s": "a\uffff"}]}}
    with pytest.raises(ManifestError, match="U\\+FFFF"):
        parse_spec(spec, source="event.spec")

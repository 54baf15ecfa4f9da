"""JSON Lines manifests and inline event groups: happy paths and every per-line error."""

from __future__ import annotations

import json

import pytest

from fanfetch.core.manifest import parse_groups, parse_manifest
from fanfetch.core.models import MergeMode, Source
from fanfetch.errors import ManifestError

SHA = "ab" * 32
MD5 = "cd" * 16


def jsonl(*records: object) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


def error_of(data: bytes, source: str = "m.jsonl", **kwargs: object) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, source=source, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_lines_become_groups_in_order_with_keys_merge_and_checks() -> None:
    # GIVEN a manifest with comments, blank lines, CRLF endings and per-URL checks
    data = (
        b"# stations\r\n"
        b'{"group": "50430", "urls": ["https://h.example/a.csv", "https://h.example/b.csv"],'
        b' "key": "stations/50430.csv", "merge": "csv"}\r\n'
        b"\r\n"
        + jsonl(
            {
                "group": 7,
                "urls": [{"url": "https://h.example/x.bin", "sha256": SHA.upper(), "md5": MD5, "size": 3}],
            }
        )
    )
    # WHEN it is parsed
    job = parse_manifest(data, source="m.jsonl")
    # THEN both groups come out in file order, with the checks as Source fields (hex lowercased)
    first, second = job.groups
    assert (first.group_id, first.key, first.merge) == ("50430", "stations/50430.csv", MergeMode.CSV)
    assert first.urls == ("https://h.example/a.csv", "https://h.example/b.csv")
    assert (second.group_id, second.merge) == ("7", MergeMode.CONCAT)
    assert second.sources == (Source(url="https://h.example/x.bin", sha256=SHA, md5=MD5, size=3),)
    assert job.file_count == 3


def test_a_utf8_bom_at_the_start_is_accepted() -> None:
    # GIVEN a manifest saved by an editor that writes a BOM
    data = b"\xef\xbb\xbf" + jsonl({"group": "a", "urls": ["https://h.example/x"]})
    # WHEN / THEN it parses like the same file without one
    assert parse_manifest(data, source="m.jsonl").groups[0].group_id == "a"


def test_event_groups_follow_the_same_rules_with_the_index_as_line() -> None:
    # GIVEN inline groups from a Lambda event, the second one bad
    records = [{"group": "a", "urls": ["https://h.example/x"]}, {"group": "b", "urls": []}]
    # WHEN they are parsed
    with pytest.raises(ManifestError) as info:
        parse_groups(records, source="event")
    # THEN the error names the record's 1-based position
    assert str(info.value) == "event:2: urls: empty list: a group needs at least one URL"
    good = parse_groups(records[:1], default_merge=MergeMode.CSV)
    assert (good.groups[0].key, good.groups[0].merge) == ("a.csv", MergeMode.CSV)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            {"group": "a", "urls": ["https://h.example/x"], "merg": "csv"},
            "m.jsonl:2: merg: unknown field (expected: group, urls, key, merge, on_missing)",
            id="unknown-field",
        ),
        pytest.param({"urls": ["https://h.example/x"]}, "m.jsonl:2: group: missing", id="missing-group"),
        pytest.param({"group": "a"}, "m.jsonl:2: urls: missing", id="missing-urls"),
        pytest.param({"group": "a", "urls": []}, "m.jsonl:2: urls: empty list", id="empty-urls"),
        pytest.param(
            {"group": "a", "urls": "https://h.example/x"}, "m.jsonl:2: urls: must be a list", id="urls-str"
        ),
        pytest.param(
            {"group": "a", "urls": ["https://h.example/x", "ftp://h.example/y"]},
            "m.jsonl:2: urls[1]: URL scheme must be http or https, not 'ftp'",
            id="ftp-url",
        ),
        pytest.param(
            {"group": 1.5, "urls": ["https://h.example/x"]}, "m.jsonl:2: group: group id must be", id="float"
        ),
        pytest.param(
            {"group": " ", "urls": ["https://h.example/x"]}, "m.jsonl:2: group: empty group id", id="blank"
        ),
        pytest.param(
            {"group": "a", "urls": ["https://h.example/x"], "merge": "zip"},
            "m.jsonl:2: merge: unknown merge mode 'zip' (expected one of: csv, concat, none, csv-lenient)",
            id="bad-merge",
        ),
        pytest.param(
            {"group": "a", "urls": ["https://h.example/x"], "key": "../escape.csv"},
            "m.jsonl:2: key: output key has an empty, '.' or '..' segment",
            id="unsafe-key",
        ),
        pytest.param(
            {"group": "a", "urls": [{"url": "https://h.example/x", "sha256": "abc"}]},
            "m.jsonl:2: urls[0].sha256: sha256 must be 64 hex digits, got 'abc'",
            id="short-sha256",
        ),
        pytest.param(
            {"group": "a", "urls": [{"url": "https://h.example/x", "md5": "z" * 32}]},
            "m.jsonl:2: urls[0].md5: md5 must be 32 hex digits",
            id="non-hex-md5",
        ),
        pytest.param(
            {"group": "a", "urls": [{"url": "https://h.example/x", "size": -1}]},
            "m.jsonl:2: urls[0].size: size must be a non-negative integer",
            id="negative-size",
        ),
        pytest.param(
            {"group": "a", "urls": [{"url": "https://h.example/x", "crc": 1}]},
            "m.jsonl:2: urls[0].crc: unknown field (expected: url, sha256, md5, size)",
            id="unknown-url-field",
        ),
        pytest.param(
            {"group": "a", "urls": [{"sha256": SHA}]}, "m.jsonl:2: urls[0].url: missing", id="no-url"
        ),
        pytest.param(["a", "https://h.example/x"], "m.jsonl:2: each line must be a JSON object", id="array"),
        pytest.param(
            '{"group": "a", "urls": ["https://h.example/x"]',
            "m.jsonl:2: invalid JSON: Expecting ',' delimiter at column",
            id="bad-json",
        ),
        pytest.param(
            '{"group": "a", "group": "b", "urls": ["https://h.example/x"]}',
            "m.jsonl:2: group: field appears twice",
            id="duplicate-field",
        ),
        pytest.param(
            {"group": "a", "urls": ["https://h.example/" + "x" * 9000]},
            "m.jsonl:2: urls[0]: URL is 9,018 characters long, over the 8,192 limit",
            id="huge-url",
        ),
        pytest.param(
            '{"group": "a\\ud800", "urls": ["https://h.example/x"]}',
            "m.jsonl:2: group: group id contains an unpaired surrogate",
            id="surrogate",
        ),
    ],
)
def test_a_bad_line_is_rejected_naming_file_line_and_field(line: object, expected: str) -> None:
    # GIVEN a manifest whose second line is bad
    data = jsonl({"group": "ok", "urls": ["https://h.example/ok"]}, line)
    # WHEN it is parsed / THEN one error names file, line and field
    assert error_of(data).startswith(expected)


def test_a_ten_megabyte_line_is_rejected_without_echoing_it() -> None:
    # GIVEN the issue's case: one 10 MB line after a good one
    data = (
        jsonl({"group": "ok", "urls": ["https://h.example/ok"]}) + b"\n" + b'{"group": "' + b"x" * 10_000_000
    )
    # WHEN it is parsed
    message = error_of(data)
    # THEN the error names the line and the limit, and stays short
    assert message.startswith(
        "m.jsonl:2: line is 10,000,011 bytes long, over the 1,048,576-byte (1 MiB) limit"
    )
    assert len(message) < 200


def test_bytes_that_are_not_utf8_are_rejected_naming_line_and_column() -> None:
    # GIVEN a Latin-1 "é" (0xE9) on line 3, after 39 ASCII characters and one valid "ü"
    bad = '{"group": "ü", "urls": ["https://h.example/caf'.encode() + b'\xe9"]}'
    data = b'{"group": "a", "urls": ["https://h.example/a"]}\n\n' + bad
    # WHEN it is parsed / THEN the error names the line, the character column and the byte
    assert error_of(data) == "m.jsonl:3: not UTF-8: byte 0xe9 at column 47 (byte 48 of the line)"


def test_an_empty_manifest_or_one_with_only_comments_is_rejected() -> None:
    assert error_of(b"") == "m.jsonl: no groups (the input is empty or has only blank and comment lines)"
    assert error_of(b"# nothing yet\n\n").startswith("m.jsonl: no groups")

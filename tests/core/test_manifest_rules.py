"""Rules shared by every manifest format: format detection, default keys, uniqueness, the job id."""

from __future__ import annotations

import json

import pytest

from fanfetch.core.manifest import derive_job_id, detect_format, parse_groups, parse_manifest
from fanfetch.core.models import MergeMode
from fanfetch.errors import ManifestError


def jsonl(*records: dict[str, object]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def error_of(data: bytes, source: str = "m.jsonl", **kwargs: object) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, source=source, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("s3://bucket/in/m.JSONL", b"group,url\n", "jsonl"),
        ("m.ndjson", b"", "jsonl"),
        ("m.json", b"", "jsonl"),
        ("m.csv", b"{", "csv"),
        ("job.toml", b"", "spec"),
        ("stdin", b'\xef\xbb\xbf\n  # hi\n{"group": 1}', "jsonl"),
        ("stdin", b"# spec\n[job]\n", "spec"),
        ("stdin", b'url = "https://h.example/{x}"\n', "spec"),
        ("stdin", b"group,url\n", "csv"),
    ],
)
def test_the_format_comes_from_the_suffix_else_from_the_first_line(
    source: str, data: bytes, expected: str
) -> None:
    assert detect_format(data, source=source) == expected


def test_an_explicit_format_wins_over_the_name() -> None:
    # GIVEN CSV content in a file named like JSON Lines
    data = b"group,url\n1,https://h.example/a\n"
    # WHEN the caller says it is CSV / THEN it parses as CSV
    assert parse_manifest(data, source="m.jsonl", fmt="csv").groups[0].urls == ("https://h.example/a",)
    assert error_of(data, fmt="xml").startswith("m.jsonl: unknown manifest format 'xml'")


@pytest.mark.parametrize(
    ("merge", "url", "key"),
    [
        (MergeMode.CSV, "https://h.example/data?x=1", "st/1.csv"),
        (MergeMode.CONCAT, "https://h.example/dir/file.tar.gz?token=abc", "st/1.gz"),
        (MergeMode.CONCAT, "https://h.example/dir/archive.parquet", "st/1.parquet"),
        (MergeMode.CONCAT, "https://h.example/dir/file.verylongextension", "st/1"),
        (MergeMode.CONCAT, "https://h.example/", "st/1"),
        (MergeMode.CONCAT, "https://h.example/.hidden", "st/1"),
        (MergeMode.NONE, "https://h.example/a.csv", "st/1/"),
    ],
)
def test_a_missing_key_is_derived_from_the_group_id_and_merge_mode(
    merge: MergeMode, url: str, key: str
) -> None:
    # GIVEN a group without a key, merged with the caller's default mode
    job = parse_manifest(jsonl({"group": "st/1", "urls": [url]}), source="m.jsonl", default_merge=merge)
    # WHEN / THEN the key follows the documented rule
    assert (job.groups[0].key, job.groups[0].merge) == (key, merge)


def test_a_folder_key_for_merge_none_always_ends_with_a_slash() -> None:
    job = parse_manifest(
        jsonl({"group": "a", "urls": ["https://h.example/x"], "key": "out/a", "merge": "none"}), source="m"
    )
    assert job.groups[0].key == "out/a/"


def test_a_derived_key_that_is_unsafe_names_the_group_field() -> None:
    # GIVEN a group id that would make the key "../etc.csv"
    data = jsonl(
        {"group": "ok", "urls": ["https://h.example/a"]}, {"group": "../etc", "urls": ["https://h.example/b"]}
    )
    # WHEN parsed with merge csv / THEN the error points at the group id, the thing to fix
    assert error_of(data, default_merge=MergeMode.CSV).startswith(
        "m.jsonl:2: group: output key has an empty, '.' or '..' segment: '../etc.csv'"
    )


def test_duplicate_group_ids_name_both_lines() -> None:
    data = jsonl(
        {"group": "50430", "urls": ["https://h.example/a"]},
        {"group": "x", "urls": ["https://h.example/b"]},
        {"group": 50430, "urls": ["https://h.example/c"]},
    )
    assert error_of(data) == "m.jsonl:3: group: duplicate group id '50430' (first at line 1)"


def test_two_groups_with_one_output_key_name_both_lines() -> None:
    # GIVEN an explicit key equal to another group's derived key
    data = jsonl(
        {"group": "a", "urls": ["https://h.example/1.csv"]},
        {"group": "b", "urls": ["https://h.example/2.csv"], "key": "a.csv"},
    )
    assert error_of(data) == "m.jsonl:2: key: output key 'a.csv' is already the key of group 'a' (line 1)"


def test_a_key_inside_another_groups_file_or_folder_is_rejected() -> None:
    # GIVEN group b's key uses group a's output file as a folder (impossible on a disk)
    data = jsonl(
        {"group": "a", "urls": ["https://h.example/1"], "key": "out/a"},
        {"group": "b", "urls": ["https://h.example/2"], "key": "out/a/b.csv"},
    )
    assert error_of(data).startswith("m.jsonl:2: key: output key 'out/a/b.csv' needs 'out/a' to be a folder")
    # AND a key inside another group's merge-none folder could overwrite its files
    data = jsonl(
        {"group": "a", "urls": ["https://h.example/1"], "merge": "none"},
        {"group": "b", "urls": ["https://h.example/2"], "key": "a/1"},
    )
    assert error_of(data).startswith(
        "m.jsonl:2: key: output key 'a/1' lies inside 'a/', the output folder of group"
    )


def test_the_job_id_is_deterministic_and_changes_with_the_content() -> None:
    # GIVEN the same manifest parsed twice, once from another file name and format
    urls = ["https://h.example/1.csv", "https://h.example/2.csv"]
    records: list[dict[str, object]] = [{"group": "a", "urls": urls}]
    first = parse_manifest(jsonl(*records), source="one.jsonl")
    again = parse_groups(records, source="event")
    as_csv = parse_manifest(
        b"group,url\na,https://h.example/1.csv\na,https://h.example/2.csv\n", source="x.csv"
    )
    # THEN the job id is the same: it depends on the validated groups only
    assert first.job_id == again.job_id == as_csv.job_id == derive_job_id(first.groups)
    assert len(first.job_id) == 16 and int(first.job_id, 16) >= 0
    # AND any change to URLs order, merge mode or key changes it
    swapped = parse_groups([{"group": "a", "urls": urls[::-1]}])
    as_csv_mode = parse_groups(records, default_merge=MergeMode.CSV)
    assert len({first.job_id, swapped.job_id, as_csv_mode.job_id}) == 3


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("stations/A.csv", "stations/a.csv"),  # case
        ("Stations/a.csv", "stations/a.csv"),  # case in a folder
        ("caf\u00e9.csv", "cafe\u0301.csv"),  # NFC vs NFD
        ("STRASSE.csv", "stra\u00dfe.csv"),  # full case folding (ß)
    ],
)
def test_keys_that_collide_after_case_folding_or_unicode_normalisation_are_rejected(first: str, second: str) -> None:
    # GIVEN two keys that are one file on macOS / Windows
    data = jsonl({"group": "a", "urls": ["https://h.example/1"], "key": first},
                 {"group": "b", "urls": ["https://h.example/2"], "key": second})
    # THEN the second is rejected on one line naming file, line and field, and the first key
    message = error_of(data)
    assert message.startswith(f"m.jsonl:2: key: output key {second!r} names the same file as {first!r}, "
                              f"the key of group 'a' (line 1)")
    assert "\n" not in message


def test_a_key_below_another_groups_file_after_case_folding_is_rejected() -> None:
    data = jsonl({"group": "a", "urls": ["https://h.example/1"], "key": "Out/a"},
                 {"group": "b", "urls": ["https://h.example/2"], "key": "out/A/b.csv"})
    assert error_of(data).startswith("m.jsonl:2: key: output key 'out/A/b.csv' needs 'out/A' to be a folder")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("_jobs/ledger.sqlite", "lies in _jobs/, a folder fanfetch reserves"),
        ("_JOBS/x/results.jsonl", "lies in _JOBS/, a folder fanfetch reserves"),
        (".fanfetch-tmp/x", "lies in .fanfetch-tmp/, a folder fanfetch reserves"),
        ("a/" + "x" * 256 + ".csv", "path component of 260 bytes, over the 255-byte"),
        ("a/" + "\u00e9" * 128, "path component of 256 bytes, over the 255-byte"),
        ("report\u202egnp.csv", "invisible or bidi control character U+202E"),
        ("a\u200bb.csv", "invisible or bidi control character U+200B"),
        ("a\u2066b\u2069.csv", "invisible or bidi control character U+2066"),
        ("\ufeffa.csv", "invisible or bidi control character U+FEFF"),
    ],
)
def test_reserved_folders_long_components_and_invisible_characters_are_rejected_in_keys(key: str,
                                                                                          expected: str) -> None:
    # GIVEN a key in fanfetch's bookkeeping folder, with a component over NAME_MAX, or hiding characters
    message = error_of(jsonl({"group": "ok", "urls": ["https://h.example/1"]},
                             {"group": "g", "urls": ["https://h.example/1"], "key": key}))
    # THEN one line names file, line and field
    assert message.startswith("m.jsonl:2: key: ") and expected in message and "\n" not in message


def test_a_component_of_exactly_255_bytes_and_reserved_names_deeper_down_are_fine() -> None:
    job = parse_manifest(jsonl({"group": "g", "urls": ["https://h.example/1"], "key": "a/" + "x" * 255},
                               {"group": "h", "urls": ["https://h.example/2"], "key": "data/_jobs/x.csv"}),
                         source="m.jsonl")
    assert [g.key for g in job.groups] == ["a/" + "x" * 255, "data/_jobs/x.csv"]


def test_a_csv_manifest_gets_the_same_key_rules_naming_its_line() -> None:
    data = b"group,url,key\na,https://h.example/1,_jobs/ledger.sqlite\n"
    assert error_of(data, source="m.csv").startswith("m.csv:2: key: output key '_jobs/ledger.sqlite' lies in _jobs/")

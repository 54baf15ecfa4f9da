"""The two-pass manifest reader: pass 1 accepts exactly what the whole-manifest parser accepts (same job id,
same hosts), finds every problem it finds; pass 2 streams the same groups in manifest order, lazily."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from fanfetch.core.manifest import parse_manifest
from fanfetch.core.manifest_stream import (
    StreamedJob,
    hosts_of_groups,
    read_plain,
    scan_drafts,
    scan_lines,
    stream_drafts,
    stream_lines,
)
from fanfetch.core.models import MergeMode
from fanfetch.core.spec import load_spec, spec_drafts
from fanfetch.errors import ManifestError

SHA = "ab" * 32


def jsonl(*records: object) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records).encode()


def lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


VALID = [
    # the plain shape, one and several URLs, every optional field, an integer id, query strings, ports
    jsonl({"group": "a", "urls": ["https://h.example/x.csv"]},
          {"group": 7, "urls": ["http://127.0.0.1:8080/f/7.bin?v=1#t", "http://127.0.0.1:8080/f/8"]},
          {"group": "c", "urls": ["https://h.example"], "key": "out/c.dat", "merge": "csv", "on_missing": "skip"},
          {"group": "d", "urls": ["https://h.example/a/b.tar.gz", "https://h.example/x,y.gz"], "merge": "none"},
          {"group": "e", "urls": ["https://H.Example:443/e.parquet"], "merge": "csv-lenient"},
          {"group": "f/g", "urls": ["https://h.example/f.toolongext"]}),
    # the full path: URL objects, non-ASCII ids and keys, spaces, escapes, nulls, other field orders
    jsonl({"urls": [{"url": "https://h.example/x", "sha256": SHA, "size": 3}], "group": "ü"},
          {"group": " spaced id ", "urls": ["https://h.example/a%20b"]},
          {"group": "k", "urls": ["https://h.example/k"], "key": "Daten/Straße.csv", "merge": None},
          {"group": "q\"uote", "urls": ["https://h.example/q"], "key": "q.bin"},
          {"group": "ip6", "urls": ["http://[::1]:9000/v"]},
          {"group": "user", "urls": ["https://u:p@h.example/z"]}),
    # comments, blank lines, CRLF, a BOM, no final newline
    b"\xef\xbb\xbf# hi\r\n\r\n" + b'{"group": "a", "urls": ["https://h.example/1"]}\r\n'
    + b'  {"group":"b","urls":[ "https://h.example/2" ,"https://h.example/3"],"key":"x/b"}',
]


@pytest.mark.parametrize("data", VALID)
@pytest.mark.parametrize("merge", [MergeMode.CONCAT, MergeMode.NONE])
def test_a_valid_manifest_scans_to_the_whole_parsers_job_and_streams_its_groups_in_order(
    data: bytes, merge: MergeMode
) -> None:
    # GIVEN a valid manifest and what the whole-manifest parser makes of it
    job = parse_manifest(data, source="m.jsonl", default_merge=merge, key_prefix="out/")
    # WHEN it is scanned (pass 1) and streamed (pass 2)
    scan = scan_lines(lines(data), fmt="jsonl", source="m.jsonl", default_merge=merge, key_prefix="out/")
    groups = list(stream_lines(lines(data), fmt="jsonl", source="m.jsonl", default_merge=merge, key_prefix="out/",
                               expected=len(job.groups)))
    # THEN the job id, sizes and hosts agree, and the groups are the same, in the same order
    assert scan is not None
    assert (scan.job_id, scan.groups, scan.files) == (job.job_id, len(job.groups), job.file_count)
    assert scan.hosts == hosts_of_groups(job.groups)
    assert tuple(groups) == job.groups


PLAIN_TRICKS = [
    '{"group": "a", "urls": ["http://h:0/x"]}',
    '{"group": "a", "urls": ["http://h:65535/x"]}',
    '{"group": "a", "urls": ["http://h:65536/x"]}',
    '{"group": "a", "urls": ["http://h:/x"]}',
    '{"group": "a", "urls": ["ftp://h/x"]}',
    '{"group": "a", "urls": ["https:///x"]}',
    '{"group": "a", "urls": []}',
    '{"group": "a", "urls": ["http://h/x"], "key": "../x"}',
    '{"group": "a", "urls": ["http://h/x"], "key": "a//b"}',
    '{"group": "a", "urls": ["http://h/x"], "key": "/abs"}',
    '{"group": "a", "urls": ["http://h/x"], "key": "x/"}',
    '{"group": "a", "urls": ["http://h/x"], "key": "_JOBS/x"}',
    '{"group": "a", "urls": ["http://h/x"], "key": ".fanfetch-tmp"}',
    '{"group": "a", "urls": ["http://h/x"], "key": "' + "k" * 256 + '"}',
    '{"group": "a", "urls": ["http://h/x"], "key": "' + "k/" * 600 + 'k"}',
    '{"group": "' + "g" * 513 + '", "urls": ["http://h/x"]}',
    '{"group": "' + "g" * 500 + '", "urls": ["http://h/x"]}',
    '{"group": ".", "urls": ["http://h/x"], "merge": "none"}',
    '{"group": "..", "urls": ["http://h/x.csv"]}',
    '{"group": "_jobs", "urls": ["http://h/x"], "merge": "csv"}',
    '{"group": "a", "urls": ["http://h/' + "p" * 8200 + '"]}',
    '{"group": "a", "urls": ["http://h/x"], "merge": "CSV"}',
    '{"group": "a", "urls": ["http://h/x"], "on_missing": "never"}',
    '{"group": "a", "urls": ["http://h/x"], "extra": 1}',
    '{"group": "a", "group": "b", "urls": ["http://h/x"]}',
    '{"group": 00, "urls": ["http://h/x"]}',
    '{"group": -0, "urls": ["http://h/x"]}',
    '{"group": "a", "urls": ["http://h/x", "https://other.example:8443/y?z"], "merge": "none"}',
]


@pytest.mark.parametrize("line", PLAIN_TRICKS)
@pytest.mark.parametrize("prefix", ["", "p" * 900 + "/"])
def test_the_fast_path_accepts_a_line_only_as_the_full_path_reads_it(line: str, prefix: str) -> None:
    # GIVEN a line near an edge of some rule / WHEN the fast path reads it
    plain = read_plain(line, MergeMode.CONCAT, len(prefix))
    # THEN it leaves the line to the full path, or makes exactly the group the full path makes
    if plain is None:
        return
    job = parse_manifest(line.encode(), source="m.jsonl", key_prefix=prefix)
    group = job.groups[0]
    assert (plain[0], plain[1], plain[3], plain[4], plain[5]) == (
        group.group_id, list(group.urls), group.key, group.merge, group.on_missing)


BAD = {
    "a duplicate group id": jsonl({"group": "a", "urls": ["https://h/1"]}, {"group": "a", "urls": ["https://h/2"]}),
    "an integer id equal to a text id": jsonl({"group": 1, "urls": ["https://h/1"]},
                                              {"group": "1", "urls": ["https://h/2"]}),
    "one key twice": jsonl({"group": "a", "urls": ["https://h/1"], "key": "k"},
                           {"group": "b", "urls": ["https://h/2"], "key": "k"}),
    "keys equal after case folding": jsonl({"group": "a", "urls": ["https://h/1"], "key": "K.csv"},
                                           {"group": "b", "urls": ["https://h/2"], "key": "k.csv"}),
    "keys equal after NFC": jsonl({"group": "a", "urls": ["https://h/1"], "key": "caf\u00e9"},
                                  {"group": "b", "urls": ["https://h/2"], "key": "cafe\u0301"}),
    "a derived key twice": jsonl({"group": "a", "urls": ["https://h/x.csv"]},
                                 {"group": "a.csv", "urls": ["https://h/y"]}),
    "a key below another's file": jsonl({"group": "a", "urls": ["https://h/1"], "key": "x/y.csv"},
                                        {"group": "b", "urls": ["https://h/2"], "key": "x/y.csv/z"}),
    "a key below another's file, other order": jsonl({"group": "a", "urls": ["https://h/1"], "key": "X/y/z"},
                                                     {"group": "b", "urls": ["https://h/2"], "key": "x"}),
    "a key inside another's folder": jsonl({"group": "a", "urls": ["https://h/1"], "merge": "none", "key": "d"},
                                           {"group": "b", "urls": ["https://h/2"], "key": "d/e.csv"}),
    "a folder named like a file": jsonl({"group": "a", "urls": ["https://h/1"], "key": "d"},
                                        {"group": "b", "urls": ["https://h/2"], "merge": "none", "key": "D"}),
    "two folders alike": jsonl({"group": "a", "urls": ["https://h/1"], "merge": "none"},
                               {"group": "A", "urls": ["https://h/2"], "merge": "none"}),
    "a bad line after good ones": jsonl({"group": "a", "urls": ["https://h/1"]}, "{not json"),
    "an unknown field": jsonl({"group": "a", "urls": ["https://h/1"], "kee": "x"}),
    "a bad URL": jsonl({"group": "a", "urls": ["ftp://h/1"]}),
    "a port out of range": jsonl({"group": "a", "urls": ["http://h:70000/1"]}),
    "a key leaving the folder": jsonl({"group": "a", "urls": ["https://h/1"], "key": "../x"}),
    "a reserved folder": jsonl({"group": "_jobs", "urls": ["https://h/1"], "merge": "none"}),
    "an invisible character": jsonl({"group": "a", "urls": ["https://h/1"], "key": "a\u202eb"}),
    "a component over 255 bytes": jsonl({"group": "a", "urls": ["https://h/1"], "key": "x" * 256}),
    "a key over S3's limit with the prefix": jsonl({"group": "a", "urls": ["https://h/1"], "key": "k" * 200}),
    "a failure record over S3's limit": jsonl({"group": "g" * 200, "urls": ["https://h/1"]}),
    "a failure record over S3's limit once its id is encoded": jsonl({"group": "G" * 60, "urls": ["https://h/1"]}),
    "a character SQS refuses": jsonl({"group": "a\ufffe", "urls": ["https://h/1"]}),
    "no groups": b"# only a comment\n\n",
    "not UTF-8": b'{"group": "a", "urls": ["https://h/1"]}\n{"group": "\xff"}\n',
    "a line over 1 MiB": b'{"group": "a", "urls": ["https://h/1"]}\n' + b"x" * (1024 * 1024 + 1) + b"\n",
}


@pytest.mark.parametrize("name", list(BAD))
def test_every_rule_is_caught_in_pass_one_and_the_whole_parser_words_it(name: str) -> None:
    # GIVEN a manifest breaking one rule (with a long output prefix, so S3's key limit is near)
    data = BAD[name]
    prefix = "p" * 850 + "/"
    # WHEN pass 1 reads it / THEN it reports a problem (None: the whole parser will word it)
    assert scan_lines(lines(data), fmt="jsonl", source="m.jsonl", default_merge=MergeMode.CONCAT,
                      key_prefix=prefix) is None
    # AND the whole parser does refuse it (so the streamed loader raises exactly its error)
    with pytest.raises(ManifestError):
        parse_manifest(data, source="m.jsonl", key_prefix=prefix)


def test_groups_are_streamed_lazily_in_manifest_order() -> None:
    # GIVEN a manifest read through a counting line source
    data = jsonl(*({"group": f"g{i}", "urls": [f"https://h.example/{i}"]} for i in range(1000)))
    pulled = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for line in lines(data):
            pulled += 1
            yield line

    # WHEN the first three groups are taken
    stream = stream_lines(source(), fmt="jsonl", source="m.jsonl", default_merge=MergeMode.CONCAT)
    first = [next(stream).group_id for _ in range(3)]
    # THEN they are the first three, and only their lines were read
    assert first == ["g0", "g1", "g2"] and pulled == 3


def test_a_manifest_changed_between_the_passes_stops_the_stream_with_an_error() -> None:
    # GIVEN a scan of two groups, and then a file with a bad line, or with a third group
    good = jsonl({"group": "a", "urls": ["https://h/1"]}, {"group": "b", "urls": ["https://h/2"]})
    assert scan_lines(lines(good), fmt="jsonl", source="m", default_merge=MergeMode.CONCAT) is not None
    for changed in (good + b"{bad\n", good + jsonl({"group": "c", "urls": ["https://h/3"]})):
        # WHEN it is streamed / THEN the stream ends in an error saying so
        with pytest.raises(ManifestError, match="changed after it was checked"):
            list(stream_lines(lines(changed), fmt="jsonl", source="m", default_merge=MergeMode.CONCAT, expected=2))


def test_a_csv_with_adjacent_rows_streams_and_one_with_scattered_rows_goes_to_the_whole_parser() -> None:
    # GIVEN a CSV whose groups' rows are adjacent, and the same rows scattered
    adjacent = b"group,url,key\na,https://h/1,\na,https://h/2,k/a.csv\nb,https://h/3,\n"
    scattered = b"group,url\na,https://h/1\nb,https://h/3\na,https://h/2\n"
    # WHEN each is scanned
    scan = scan_lines(lines(adjacent), fmt="csv", source="m.csv", default_merge=MergeMode.CSV)
    # THEN the adjacent one streams the whole parser's groups, with its job id
    job = parse_manifest(adjacent, source="m.csv", default_merge=MergeMode.CSV)
    assert scan is not None and (scan.job_id, scan.groups, scan.files) == (job.job_id, 2, 3)
    assert tuple(stream_lines(lines(adjacent), fmt="csv", source="m.csv", default_merge=MergeMode.CSV)) == job.groups
    # AND the scattered one is left to the whole parser, which gathers its rows (as before)
    assert scan_lines(lines(scattered), fmt="csv", source="m.csv", default_merge=MergeMode.CSV) is None
    assert [g.urls for g in parse_manifest(scattered, source="m.csv").groups] == [
        ("https://h/1", "https://h/2"), ("https://h/3",)]


@pytest.mark.parametrize("data", [
    b"group,url\na,ftp://h/1\n",
    b"group,url,key\na,https://h/1,x\na,https://h/2,y\n",
    b"group,url\n",
    b"group,uri\na,https://h/1\n",
    b'group,url\na,"https://h/1\n',
    b"group,url,key\na,https://h/1,k\nb,https://h/2,K\n",
])
def test_a_bad_csv_is_caught_in_pass_one(data: bytes) -> None:
    assert scan_lines(lines(data), fmt="csv", source="m.csv", default_merge=MergeMode.CONCAT) is None
    with pytest.raises(ManifestError):
        parse_manifest(data, source="m.csv")


SPEC = b"""[job]
url = "https://h.example/{site}/{year}.csv"
group = "{site}"
merge = "csv"
on_missing = "skip"
[table]
rows = [{site = "a", first = 2000, last = 2002}, {site = "b", first = 2001, last = 2001}]
[expand]
year = {from = "first", to = "last"}
"""


def test_a_job_spec_expands_lazily_to_the_whole_parsers_groups() -> None:
    # GIVEN a spec over a table / WHEN it is scanned and streamed
    drafts = spec_drafts(SPEC, source="job.toml")
    scan = scan_drafts(drafts, default_merge=MergeMode.CONCAT)
    groups = tuple(stream_drafts(drafts, source="job.toml", default_merge=MergeMode.CONCAT))
    # THEN it is the job load_spec makes, on_missing included
    job = load_spec(SPEC, source="job.toml")
    assert scan is not None and (scan.job_id, scan.groups, scan.files) == (job.job_id, 2, 4)
    assert groups == job.groups and groups[0].on_missing is not None


def test_a_spec_making_one_group_id_twice_is_caught_in_pass_one() -> None:
    spec = SPEC.replace(b'group = "{site}"', b'group = "g"').replace(b"{site}/{year}", b"{site}{year}")
    assert scan_drafts(spec_drafts(spec, source="job.toml"), default_merge=MergeMode.CONCAT) is None
    with pytest.raises(ManifestError, match="duplicate group id"):
        load_spec(spec, source="job.toml")


def test_a_job_held_in_memory_streams_the_same_way_with_the_runs_on_missing_default() -> None:
    from fanfetch.core.models import OnMissing

    job = parse_manifest(jsonl({"group": "a", "urls": ["https://h/1"]},
                               {"group": "b", "urls": ["https://h/2"], "on_missing": "fail"}), source="m.jsonl")
    streamed = StreamedJob.from_job(job).with_default_on_missing(OnMissing.SKIP)
    assert (streamed.group_count, streamed.file_count) == (2, 2)
    assert [g.on_missing for g in streamed.iter_groups()] == [OnMissing.SKIP, OnMissing.FAIL]

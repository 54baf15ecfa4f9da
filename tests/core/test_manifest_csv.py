"""CSV manifests: non-adjacent rows of a group, optional columns, header and quoting errors."""

from __future__ import annotations

import pytest

from fanfetch.core.manifest import parse_manifest
from fanfetch.core.models import MergeMode, Source
from fanfetch.errors import ManifestError


def error_of(data: bytes, source: str = "m.csv") -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, source=source)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_rows_of_a_group_need_not_be_adjacent_and_keep_file_order() -> None:
    # GIVEN interleaved rows of two groups, a key on only one row of group 1, CRLF endings
    data = (
        b"group,url,key\r\n"
        b"1,https://h.example/1990.csv,out/one.csv\r\n"
        b"2,https://h.example/b.csv.gz,\r\n"
        b"1,https://h.example/1991.csv,\r\n"
        b'1,"https://h.example/1992.csv",out/one.csv\r\n'
    )
    # WHEN it is parsed with --merge concat (the default)
    job = parse_manifest(data, source="m.csv")
    # THEN groups appear in order of first row, URLs in file order, and group 2 gets a derived key
    one, two = job.groups
    assert one.group_id == "1" and one.key == "out/one.csv"
    assert one.urls == tuple(f"https://h.example/{y}.csv" for y in (1990, 1991, 1992))
    assert (two.key, two.merge) == ("2.gz", MergeMode.CONCAT)


def test_integrity_columns_become_source_fields_and_columns_may_be_reordered() -> None:
    # GIVEN optional sha256/md5/size columns in any order, some cells empty
    sha = "0f" * 32
    data = f"url,size,group,sha256,md5\nhttps://h.example/a,10,g,{sha},\nhttps://h.example/b,,g,,\n".encode()
    # WHEN it is parsed
    (group,) = parse_manifest(data, source="m.csv", default_merge=MergeMode.CSV).groups
    # THEN each row's checks are kept; empty cells mean "unknown"
    assert group.sources == (
        Source("https://h.example/a", sha256=sha, size=10),
        Source("https://h.example/b"),
    )
    assert group.key == "g.csv"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            b"grp,url\n1,https://h.example/a\n",
            "m.csv:1: header: unknown column 'grp': expected columns group,url "
            "(optional: key, sha256, md5, size); got: 'grp,url'",
            id="wrong-column",
        ),
        pytest.param(
            b"group,key\n1,a.csv\n",
            "m.csv:1: header: missing column(s) url: expected columns group,url",
            id="missing-column",
        ),
        pytest.param(
            b"group,url,url\n", "m.csv:1: header: column 'url' appears twice", id="duplicate-column"
        ),
        pytest.param(
            b'group,url\n1,https://h.example/a\n2,"https://h.example/b"x\n',
            "m.csv:3: bad CSV quoting: ',' expected after '\"'",
            id="stray-quote",
        ),
        pytest.param(
            b'group,url\n1,https://h.example/a\n2,"https://h.example/b\n3,https://h.example/c\n',
            "m.csv:3: bad CSV quoting: a quoted field is never closed",
            id="unclosed-quote",
        ),
        pytest.param(
            b"group,url\n1,https://h.example/a,extra\n",
            "m.csv:2: expected 2 fields (group,url), got 3",
            id="extra-field",
        ),
        pytest.param(
            b"group,url,key\n1,https://h.example/a,a.csv\n2,https://h.example/b,\n1,https://h.example/c,b.csv\n",
            "m.csv:4: key: 'b.csv' differs from 'a.csv' given for group '1' on line 2",
            id="key-disagrees",
        ),
        pytest.param(
            b"group,url\n1,file:///etc/passwd\n", "m.csv:2: url: URL scheme must be http or https", id="file"
        ),
        pytest.param(
            b"group,url,size\n1,https://h.example/a,big\n", "m.csv:2: size: size must be", id="bad-size"
        ),
        pytest.param(
            b"group,url\n", "m.csv:1: no groups: the CSV has a header but no rows", id="header-only"
        ),
    ],
)
def test_a_bad_csv_is_rejected_naming_line_and_field(data: bytes, expected: str) -> None:
    # GIVEN a CSV manifest with one problem / WHEN parsed / THEN the error pinpoints it
    assert error_of(data).startswith(expected)

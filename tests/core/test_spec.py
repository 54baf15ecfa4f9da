"""TOML job specs: the motivating climate job expands to the right groups, and every spec or table
error names the file, line and field to fix."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fanfetch.core.manifest import parse_manifest, parse_spec
from fanfetch.core.models import Job, MergeMode
from fanfetch.errors import ManifestError

URL = (
    "https://climate.weather.gc.ca/climate_data/bulk_data_e.html?format=csv"
    "&stationID={station_id}&Year={year}&Month=1&timeframe=2"
)
SPEC = f"""\
[job]
url = "{URL}"
group = "{{station_id}}"
key = "stations/{{station_id}}.csv"
merge = "csv"

[table]
path = "stations.csv"

[expand]
year = {{ from = "first_year", to = "last_year" }}
"""
STATIONS = b"station_id,first_year,last_year\n50430,1990,1992\n27211,2001,2001\n6158733,2019,2020\n"


def tables(files: dict[str, bytes]) -> Callable[[str], bytes]:
    def read_related(path: str) -> bytes:
        if path not in files:
            raise ManifestError(f"/data/{path}", "cannot read file: No such file or directory")
        return files[path]

    return read_related


def parse(spec: str = SPEC, table: bytes = STATIONS, source: str = "jobs/climate.toml") -> Job:
    return parse_manifest(spec.encode(), source=source, read_related=tables({"stations.csv": table}))


def error_of(spec: str = SPEC, table: bytes = STATIONS) -> str:
    with pytest.raises(ManifestError) as info:
        parse(spec, table)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_motivating_spec_expands_to_one_group_per_station_with_years_in_order() -> None:
    # GIVEN the climate spec and three stations with inclusive year ranges
    # WHEN it is parsed
    job = parse()
    # THEN one csv-merged group per station, in table order, with one URL per year
    assert [(g.group_id, g.key, g.merge) for g in job.groups] == [
        ("50430", "stations/50430.csv", MergeMode.CSV),
        ("27211", "stations/27211.csv", MergeMode.CSV),
        ("6158733", "stations/6158733.csv", MergeMode.CSV),
    ]
    assert job.groups[0].urls == tuple(URL.format(station_id=50430, year=y) for y in (1990, 1991, 1992))
    assert [len(g.sources) for g in job.groups] == [3, 1, 2]
    assert job.file_count == 6
    assert job.groups[2].urls[-1].endswith("stationID=6158733&Year=2020&Month=1&timeframe=2")


def test_inline_rows_literal_lists_ranges_and_format_specs() -> None:
    # GIVEN a spec with inline rows, a literal range and a literal list, and a zero-padded month
    spec = """\
[job]
url = "https://h.example/{site}/{year}-{month:02d}.{ext}"
group = "{site}"

[table]
rows = [{site = "a"}, {site = "b"}]

[expand]
year = {from = 2000, to = 2001}
month = [1, 12]
ext = ["csv"]
"""
    # WHEN it is parsed without any table file reader
    job = parse_manifest(spec.encode(), source="s.toml", default_merge=MergeMode.CONCAT)
    # THEN the first [expand] variable is outermost and the key comes from the first URL's extension
    assert job.groups[1].urls == (
        "https://h.example/b/2000-01.csv",
        "https://h.example/b/2000-12.csv",
        "https://h.example/b/2001-01.csv",
        "https://h.example/b/2001-12.csv",
    )
    assert [g.key for g in job.groups] == ["a.csv", "b.csv"]


def test_a_group_template_using_an_expand_variable_makes_a_group_per_value() -> None:
    spec = {
        "job": {"url": "https://h.example/{y}/{part}", "group": "y{y}", "key": "out/{y}.bin"},
        "expand": {"y": [2000, 2001], "part": ["a", "b"]},
    }
    job = parse_spec(spec, source="event")
    assert [(g.group_id, g.key, len(g.sources)) for g in job.groups] == [
        ("y2000", "out/2000.bin", 2),
        ("y2001", "out/2001.bin", 2),
    ]


def test_the_same_spec_gives_the_same_job_id() -> None:
    assert parse().job_id == parse().job_id != parse(table=STATIONS.replace(b"1992", b"1993")).job_id


@pytest.mark.parametrize(
    ("spec", "table", "expected"),
    [
        pytest.param(
            SPEC.replace("{station_id}&", "{stationid}&"),
            STATIONS,
            "jobs/climate.toml:2: job.url: unknown placeholder {stationid} "
            "(available: station_id, first_year, last_year, year)",
            id="unknown-placeholder",
        ),
        pytest.param(
            SPEC,
            b"station_id,last_year\n50430,1992\n",
            "jobs/stations.csv:1: header: missing column 'first_year' (used by expand.year); "
            "columns: station_id, last_year",
            id="missing-column",
        ),
        pytest.param(
            SPEC,
            b"station_id,first_year,last_year\n50430,1990,1992\n27211,around 2000,2001\n",
            "jobs/stations.csv:3: first_year: expand.year.from needs an integer, got 'around 2000'",
            id="non-integer-bound-in-table",
        ),
        pytest.param(
            SPEC,
            b"station_id,first_year,last_year\n50430,1993,1992\n",
            "jobs/stations.csv:2: first_year: expand.year: empty range, from 1993 is greater than to 1992",
            id="from-after-to-in-table",
        ),
        pytest.param(
            SPEC.replace('from = "first_year"', "from = 1.5"),
            STATIONS,
            "jobs/climate.toml:11: expand.year.from: range bound from must be an integer or a column name",
            id="non-integer-literal-bound",
        ),
        pytest.param(
            SPEC.replace('{ from = "first_year", to = "last_year" }', "{ from = 2020, to = 1990 }"),
            STATIONS,
            "jobs/climate.toml:11: expand.year: empty range: from 2020 is greater than to 1990",
            id="from-after-to-literal",
        ),
        pytest.param(
            SPEC,
            STATIONS + b"50430,2005,2006\n",
            "jobs/stations.csv:5: group: duplicate group id '50430' (first at line 2)",
            id="duplicate-station",
        ),
        pytest.param(
            SPEC,
            b'station_id,first_year,last_year\n50430,1990,1992\n"27211,2001,2001\n',
            "jobs/stations.csv:3: bad CSV quoting: a quoted field is never closed",
            id="table-bad-quoting",
        ),
        pytest.param(
            SPEC,
            b"station_id,first_year,last_year\n50430,1990,1992\n5 0,1990,1990\n",
            "jobs/stations.csv:3: job.url: URL contains whitespace",
            id="value-breaks-url",
        ),
        pytest.param(
            SPEC,
            b"station_id,first_year\xff,last_year\n",
            "jobs/stations.csv:1: not UTF-8: byte 0xff",
            id="table-not-utf8",
        ),
        pytest.param(
            SPEC,
            b"station_id,first_year,last_year\n",
            "jobs/stations.csv:1: the table has a header but no rows",
            id="empty-table",
        ),
        pytest.param(
            SPEC.replace('merge = "csv"', 'merge = "zip"'),
            STATIONS,
            "jobs/climate.toml:5: job.merge: unknown merge mode 'zip' "
            "(expected one of: csv, concat, none, csv-lenient)",
            id="bad-merge",
        ),
        pytest.param(
            SPEC.replace("[expand]", "[expnd]"),
            STATIONS,
            "jobs/climate.toml:10: expnd: unknown section (expected: job, table, expand)",
            id="unknown-section",
        ),
        pytest.param(
            SPEC.replace('path = "', 'pth = "'),
            STATIONS,
            "jobs/climate.toml:8: table.pth: unknown setting (expected: path, rows)",
            id="unknown-setting",
        ),
        pytest.param(
            SPEC.replace('group = "{station_id}"\n', ""),
            STATIONS,
            "jobs/climate.toml:1: job.group: missing (required)",
            id="missing-group",
        ),
        pytest.param(
            SPEC.replace("stations/{station_id}.csv", "stations/{year}.csv"),
            STATIONS,
            "jobs/climate.toml:4: job.key: {year} changes within a group",
            id="key-varies-within-group",
        ),
        pytest.param(
            SPEC.replace("stations/{station_id}.csv", "../{station_id}.csv"),
            STATIONS,
            "jobs/stations.csv:2: job.key: output key has an empty, '.' or '..' segment",
            id="unsafe-key",
        ),
        pytest.param(
            SPEC.replace('url = "', 'url = = "'),
            STATIONS,
            "jobs/climate.toml:2: invalid TOML: Invalid value (column 7)",
            id="invalid-toml",
        ),
        pytest.param(
            SPEC.replace("{year}&", "{year!r}&"),
            STATIONS,
            "jobs/climate.toml:2: job.url: placeholder {year}: conversions and nested fields are not",
            id="conversion",
        ),
        pytest.param(
            SPEC.replace('{ from = "first_year", to = "last_year" }', "{ from = 0, to = 99999999 }"),
            STATIONS,
            "jobs/climate.toml:11: expand.year: range 0..99999999 is longer than 5,000,000 values",
            id="huge-range",
        ),
        pytest.param(
            SPEC.replace("[expand]", "[expand]\nstation_id = [1]"),
            STATIONS,
            "jobs/climate.toml:11: expand.station_id: 'station_id' is also a column of the table",
            id="expand-name-is-a-column",
        ),
        pytest.param(
            SPEC.replace('"first_year", to', '"first_year", step = 2, to'),
            STATIONS,
            "jobs/climate.toml:11: expand.year: unknown setting 'step' (expected: from, to)",
            id="range-unknown-setting",
        ),
    ],
)
def test_a_bad_spec_or_table_names_file_line_and_field(spec: str, table: bytes, expected: str) -> None:
    # GIVEN a spec or a stations table with one problem / WHEN parsed / THEN the error pinpoints it
    assert error_of(spec, table).startswith(expected)


def test_an_unreachable_table_names_the_spec_line_and_the_resolved_path() -> None:
    spec = SPEC.replace("stations.csv", "missing.csv")
    with pytest.raises(ManifestError) as info:
        parse(spec)
    assert str(info.value) == (
        "jobs/climate.toml:8: table.path: /data/missing.csv: cannot read file: No such file or directory"
    )


def test_a_spec_from_an_event_cannot_refer_to_files_and_inline_rows_are_checked() -> None:
    # GIVEN specs decoded from an event (no TOML text, so no line numbers)
    with_path = {"job": {"url": URL, "group": "{station_id}"}, "table": {"path": "stations.csv"}}
    row_missing = {
        "job": {"url": URL, "group": "{station_id}"},
        "table": {"rows": [{"station_id": 1, "first_year": 2000, "last_year": 2000}, {"station_id": 2}]},
        "expand": {"year": {"from": "first_year", "to": "last_year"}},
    }
    # WHEN / THEN the errors still name the field
    with pytest.raises(ManifestError) as info:
        parse_spec(with_path, source="event")
    assert str(info.value).startswith("event: table.path: this spec cannot refer to files here")
    with pytest.raises(ManifestError) as info:
        parse_spec(row_missing, source="event")
    assert str(info.value) == "event: table.rows[1].first_year: missing (used by expand.year.from)"


def test_the_8324_station_spec_shape_expands_quickly_enough_to_plan() -> None:
    # GIVEN a table the size of the real one but with short ranges (kept small so the test stays fast)
    rows = "".join(f"{n},2000,2001\n" for n in range(8324))
    job = parse(table=f"station_id,first_year,last_year\n{rows}".encode())
    # THEN every station is its own group of two URLs
    assert (len(job.groups), job.file_count) == (8324, 16648)

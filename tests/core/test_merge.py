"""Merging a group's parts (csv / concat) in bounded memory, and naming the files of a ``none`` group."""

from __future__ import annotations

import io
import string

import pytest

from fanfetch.core.merge import HEADER_CAP_BYTES, MAX_NAME_BYTES, html_part, merge_streams, name_files
from fanfetch.core.models import MergeMode
from fanfetch.core.validate import check_key
from fanfetch.errors import MergeError

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    given = None

BOM = b"\xef\xbb\xbf"
HEADER = b'"Longitude (x)","Latitude (y)","Station Name","Date/Time","Year","Mean Temp (\xc2\xb0C)"'


def merge(parts: list[bytes], mode: MergeMode = MergeMode.CSV, **options: int) -> bytes:
    out = io.BytesIO()
    written = merge_streams(mode, [io.BytesIO(p) for p in parts], out, **options)
    assert written == len(out.getvalue()), "the returned count must be the bytes written"
    return out.getvalue()


def station_year(year: int, *, eol: bytes = b"\n", header: bytes = HEADER, days: int = 3) -> bytes:
    rows = [
        f'"-75.67","45.38","OTTAWA CDA","{year}-01-{d:02d}","{year}","{d - 5}.5"'.encode()
        for d in range(1, days + 1)
    ]
    return eol.join([header, *rows]) + eol


def rows_of(part: bytes, eol: bytes = b"\n") -> bytes:
    """The part without its header line."""
    return part.split(eol, 1)[1]


class RecordingReader:
    """A part that records every read size; it offers only read/seek, so a ``readline()`` or
    ``readall()`` (unbounded) would fail loudly."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)
        self.largest_read = 0
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        assert size is not None and size > 0, f"unbounded read({size!r})"
        self.largest_read = max(self.largest_read, size)
        data = self._buf.read(size)
        self.bytes_read += len(data)
        return data

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buf.seek(offset, whence)


# --- csv ------------------------------------------------------------------------------------


def test_station_years_keep_one_header_and_every_row_in_order():
    # GIVEN three yearly files of one station, each with the same header
    parts = [station_year(y) for y in (2019, 2020, 2021)]
    # WHEN they are merged as CSV
    merged = merge(parts)
    # THEN the header appears once, followed by every year's rows in manifest order
    assert merged == parts[0] + rows_of(parts[1]) + rows_of(parts[2])
    assert merged.count(HEADER) == 1


def test_crlf_parts_drop_repeated_headers_and_keep_crlf():
    # GIVEN parts written with CRLF line endings
    parts = [station_year(y, eol=b"\r\n") for y in (2020, 2021)]
    # WHEN merged
    merged = merge(parts)
    # THEN the second header is dropped and every line still ends in CRLF
    assert merged == parts[0] + rows_of(parts[1], b"\r\n")
    assert merged.count(b"\n") == merged.count(b"\r\n")


def test_mixed_crlf_and_lf_headers_count_as_the_same_header():
    # GIVEN an LF part followed by a CRLF part (and back) with the same header
    lf, crlf, lf2 = station_year(2019), station_year(2020, eol=b"\r\n"), station_year(2021)
    # WHEN merged
    merged = merge([lf, crlf, lf2])
    # THEN the header appears once and the data rows are copied byte for byte, endings included
    assert merged == lf + rows_of(crlf, b"\r\n") + rows_of(lf2)
    assert merged.count(HEADER) == 1


def test_header_with_trailing_cr_only_in_one_part_is_the_same_header():
    # GIVEN a first part with an LF header and a later part whose header ends "\r\n" but rows end "\n"
    first = HEADER + b"\nr1\n"
    later = HEADER + b"\r\nr2\n"
    # WHEN merged
    # THEN the later header is still recognised and dropped
    assert merge([first, later]) == HEADER + b"\nr1\nr2\n"


@pytest.mark.parametrize("where", [0, 1, 2])
def test_bom_is_stripped_from_any_part_and_absent_from_the_output(where):
    # GIVEN three parts, one of which starts with a UTF-8 BOM
    parts = [station_year(y) for y in (2019, 2020, 2021)]
    expected = parts[0] + rows_of(parts[1]) + rows_of(parts[2])
    parts[where] = BOM + parts[where]
    # WHEN merged
    merged = merge(parts)
    # THEN the BOM is gone and the header (BOM or not) still appears only once
    assert merged == expected
    assert BOM not in merged


def test_missing_final_newline_in_a_middle_part_gets_one_so_lines_are_not_glued():
    # GIVEN a middle part whose last row has no newline
    a, b, c = (station_year(y) for y in (2019, 2020, 2021))
    b = b.rstrip(b"\n")
    # WHEN merged
    merged = merge([a, b, c])
    # THEN a newline separates its last row from the next part's first row
    assert merged == a + rows_of(b) + b"\n" + rows_of(c)


def test_missing_final_newline_in_a_crlf_part_gets_crlf():
    # GIVEN an LF first part and a CRLF middle part missing its final CRLF
    a, b, c = station_year(2019), station_year(2020, eol=b"\r\n"), station_year(2021)
    b = b.removesuffix(b"\r\n")
    # WHEN merged
    merged = merge([a, b, c])
    # THEN the added line ending follows that part's own style
    assert merged == a + rows_of(b, b"\r\n") + b"\r\n" + rows_of(c)


def test_part_ending_in_a_lone_cr_only_gets_the_missing_lf():
    # GIVEN a CRLF part cut right after the CR of its last line ending
    a = station_year(2019, eol=b"\r\n")[:-1]
    b = station_year(2020, eol=b"\r\n")
    # WHEN merged
    # THEN the line ending is completed, not doubled
    assert merge([a, b]) == a + b"\n" + rows_of(b, b"\r\n")


def test_missing_final_newline_in_the_last_part_is_kept_as_given():
    # GIVEN a last part without a final newline
    a, b = station_year(2019), station_year(2020).rstrip(b"\n")
    # WHEN merged
    merged = merge([a, b])
    # THEN the output ends exactly as that part did: nothing is appended after the data
    assert merged == a + rows_of(b)
    assert not merged.endswith(b"\n")


def test_owed_newline_is_not_written_when_only_empty_or_header_only_parts_follow():
    # GIVEN the last part with data lacks its final newline, then come empty and header-only parts
    a = station_year(2019).rstrip(b"\n")
    # WHEN merged
    merged = merge([a, b"", HEADER + b"\n", BOM, b"\r\n"])
    # THEN the output ends as that data part did
    assert merged == a


@pytest.mark.parametrize("empty", [b"", BOM, b"\n", b"\r\n\r\n", b" \t\n", BOM + b"\n"])
@pytest.mark.parametrize("position", ["start", "middle", "end"])
def test_empty_parts_contribute_nothing(empty, position):
    # GIVEN station-years with an empty (or BOM-only / blank-only) part at the start, middle or end
    a, b = station_year(2019), station_year(2020)
    parts = {"start": [empty, a, b], "middle": [a, empty, b], "end": [a, b, empty]}[position]
    # WHEN merged
    merged = merge(parts)
    # THEN the result is as if the empty part were not there; the first real part supplies the header
    assert merged == a + rows_of(b)


@pytest.mark.parametrize(
    "header_only", [HEADER + b"\n", HEADER + b"\r\n", HEADER, BOM + HEADER + b"\n", HEADER + b"\n\n"]
)
def test_header_only_parts_after_the_first_contribute_nothing(header_only):
    # GIVEN a header-only part (with or without a line ending, BOM or trailing blank line) between two years
    a, b = station_year(2019), station_year(2020)
    # WHEN merged
    merged = merge([a, header_only, b, header_only])
    # THEN it adds nothing
    assert merged == a + rows_of(b)


def test_header_only_first_part_supplies_the_header():
    # GIVEN the first part holds only the header; the next part has the header and rows
    b = station_year(2020)
    # WHEN merged
    merged = merge([HEADER + b"\n", b])
    # THEN the header appears once, then the rows
    assert merged == b


def test_header_only_first_part_without_newline_is_not_glued_to_the_rows():
    # GIVEN the first part is a bare header with no line ending
    b = station_year(2020)
    # WHEN merged
    merged = merge([HEADER, b])
    # THEN a newline separates it from the rows of the next part
    assert merged == b


def test_a_lone_header_only_part_is_output_as_is():
    # GIVEN the whole group is one header-only part
    # WHEN merged
    # THEN the header is kept (an empty table with its columns), exactly as given
    assert merge([HEADER + b"\r\n"]) == HEADER + b"\r\n"


@pytest.mark.parametrize("parts", [[], [b""], [b"", BOM, b"\n", b"  \r\n"]])
def test_all_parts_empty_gives_zero_bytes(parts):
    # GIVEN no parts, or only empty ones
    out = io.BytesIO()
    # WHEN merged
    written = merge_streams(MergeMode.CSV, [io.BytesIO(p) for p in parts], out)
    # THEN nothing is written
    assert written == 0
    assert out.getvalue() == b""


def test_lenient_keeps_a_part_with_a_different_header_whole():
    # GIVEN a part whose first line is another schema, and one with no header at all
    a = station_year(2019)
    other = b"id,value\n1,2\n"
    headerless = b'"-75.67","45.38","OTTAWA CDA","2021-01-01","2021","3.5"\n'
    # WHEN merged with csv-lenient
    merged = merge([a, other, headerless], MergeMode.CSV_LENIENT)
    # THEN no line of either is dropped
    assert merged == a + other + headerless


def test_lenient_keeps_a_header_differing_only_in_whitespace_whole():
    # GIVEN a later part whose header has a trailing space
    a = b"a,b\n1,2\n"
    b = b"a,b \n3,4\n"
    # WHEN merged
    # THEN it is not the same header, so the part is kept whole
    assert merge([a, b], MergeMode.CSV_LENIENT) == a + b


@pytest.mark.parametrize(
    "later",
    [b"date,temp,wind\n2021,3,4\n", b"2021,3\n", b"date,temp \n2021,3\n", BOM + b"Date,temp\r\n2021,3\r\n"],
    ids=["gained-a-column", "headerless", "trailing-space", "case"],
)
def test_strict_csv_fails_on_a_part_whose_header_differs_naming_its_url(later):
    # GIVEN a first year with header date,temp and a later part whose first line is something else
    first = b"date,temp\n2020,1\n"
    urls = ["https://o.example/2020.csv", "https://o.example/2021.csv"]
    # WHEN merged with the default (strict) csv mode
    with pytest.raises(MergeError) as caught:
        merge_streams(MergeMode.CSV, [io.BytesIO(first), io.BytesIO(later)], io.BytesIO(), labels=urls)
    # THEN the error names the URL, and both headers
    assert urls[1] in str(caught.value) and "'date,temp'" in str(caught.value) and "csv-lenient" in str(caught.value)


def test_strict_csv_accepts_bom_and_crlf_variants_of_the_same_header_and_empty_parts():
    parts = [b"date,temp\n2020,1\n", BOM + b"date,temp\r\n2021,2\r\n", b"", b"date,temp", b"\n"]
    assert merge(parts) == b"date,temp\n2020,1\n2021,2\r\n"


def test_html_part_names_the_first_url_served_as_text_html():
    urls = ["https://o.example/a", "https://o.example/b", "https://o.example/c"]
    assert html_part(urls, ["text/csv", "text/html; charset=utf-8", "text/html"]) == urls[1]
    assert html_part(urls, [None, "text/plain", "application/octet-stream"]) is None


def test_quoted_fields_with_embedded_newlines_survive():
    # GIVEN rows whose quoted fields hold LF and CRLF newlines, one of them the first row of a part
    a = b'id,note\n1,"line one\nline two"\n2,plain\n'
    b = b'id,note\r\n3,"first\r\nsecond\nthird"\r\n4,"x"\r\n'
    c = b'id,note\n"5\nid,note",tail\n'
    # WHEN merged
    merged = merge([a, b, c])
    # THEN every byte of every row survives and only the header lines are dropped
    assert merged == a + b[len(b"id,note\r\n") :] + c[len(b"id,note\n") :]


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 64])
def test_tiny_chunks_give_the_same_output(chunk_bytes):
    # GIVEN parts mixing BOMs, CRLF, header-only, empty and newline-less parts
    parts = [
        BOM + b"a,b\r\n1,2\r\n",
        b"",
        b"a,b\n",
        BOM,
        b"a,b\n\n3,4",
        b"\n\n",
        b"a,b\r\n5,6\r",
        b"c,d\n7,8\n",
        b"a,b",
    ]
    # WHEN merged with tiny chunks and with the default
    # THEN both give the same bytes
    lenient = MergeMode.CSV_LENIENT
    assert merge(parts, lenient, chunk_bytes=chunk_bytes) == merge(parts, lenient)
    assert merge(parts, lenient) == b"a,b\r\n1,2\r\n\n3,4\n5,6\r\nc,d\n7,8\n"


def test_large_part_merges_the_same_with_small_and_large_chunks():
    # GIVEN a 3 MiB part between two ordinary ones
    big = station_year(2000, days=1) + (b'"-75.67","45.38","OTTAWA CDA","2000-01-01","2000","1.5"\n' * 60_000)
    assert len(big) > 3 * 2**20
    parts = [station_year(1999), big, station_year(2001)]
    # WHEN merged with 64 KiB chunks and with 8 MiB chunks
    small = merge(parts, chunk_bytes=64 * 1024)
    large = merge(parts, chunk_bytes=8 * 2**20)
    # THEN the outputs are identical and complete
    assert small == large
    assert small == parts[0] + rows_of(big) + rows_of(parts[2])


@pytest.mark.parametrize("mode", [MergeMode.CSV, MergeMode.CONCAT])
@pytest.mark.parametrize("chunk_bytes", [64 * 1024, 2 * HEADER_CAP_BYTES])
def test_large_parts_are_never_read_whole(mode, chunk_bytes):
    # GIVEN 3 parts of ~4 MiB each that record every read
    row = b'"-75.67","45.38","OTTAWA CDA","2000-01-01","2000","1.5"\n'
    data = [HEADER + b"\n" + row * (4 * 2**20 // len(row)) for _ in range(3)]
    readers = [RecordingReader(d) for d in data]
    out = io.BytesIO()
    # WHEN merged
    written = merge_streams(mode, readers, out, chunk_bytes=chunk_bytes)
    # THEN no read asked for more than a chunk (or the header cap), yet every byte was read
    for reader, d in zip(readers, data, strict=True):
        assert reader.largest_read <= max(chunk_bytes, HEADER_CAP_BYTES)
        assert reader.bytes_read == len(d)
    assert written == len(out.getvalue()) > 12 * 2**20 - 100


def test_first_line_longer_than_the_header_cap_is_treated_as_data():
    # GIVEN parts whose first line is longer than the header cap (here 64 bytes)
    long_line = b"x" * 200 + b"\n"
    parts = [long_line + b"1\n", long_line + b"2\n", b"a,b\n3\n", b"a" * 100]
    # WHEN merged
    merged = merge(parts, MergeMode.CSV_LENIENT, chunk_bytes=16, header_cap_bytes=64)
    # THEN nothing is dropped or crashes: the long line is data, so no later part loses a line
    assert merged == b"".join(parts)


def test_later_part_with_an_overlong_first_line_is_kept_whole():
    # GIVEN a normal first part and a later part whose first line exceeds the cap
    a = b"a,b\n1,2\n"
    b = b"a,b" + b"," * 100 + b"\n3,4\n"
    # WHEN merged
    # THEN the later part is kept whole
    assert merge([a, b], MergeMode.CSV_LENIENT, header_cap_bytes=32) == a + b


def test_parts_left_at_their_end_are_read_from_the_start():
    # GIVEN parts just written to and not rewound, as a download into a temp file leaves them
    parts = []
    for y in (2019, 2020):
        f = io.BytesIO()
        f.write(station_year(y))
        parts.append(f)
    out = io.BytesIO()
    # WHEN merged
    merge_streams(MergeMode.CSV, parts, out)
    # THEN the whole of each part is merged
    assert out.getvalue() == station_year(2019) + rows_of(station_year(2020))


def test_parts_may_be_a_generator():
    # GIVEN parts produced lazily
    gen = (io.BytesIO(station_year(y)) for y in (2019, 2020))
    out = io.BytesIO()
    # WHEN merged
    merge_streams(MergeMode.CSV, gen, out)
    # THEN all are merged
    assert out.getvalue() == station_year(2019) + rows_of(station_year(2020))


# --- concat / none / options ----------------------------------------------------------------


def test_concat_is_byte_exact():
    # GIVEN parts with BOMs, repeated headers, missing newlines and empty parts
    parts = [BOM + b"a,b\n1", b"", b"a,b\r\n2\r\n", bytes(range(256)), b"\n"]
    # WHEN concatenated with a small chunk
    merged = merge(parts, MergeMode.CONCAT, chunk_bytes=7)
    # THEN the output is the parts' bytes in order, nothing added or removed
    assert merged == b"".join(parts)


def test_concat_of_nothing_is_empty():
    assert merge([], MergeMode.CONCAT) == b""


def test_none_mode_raises():
    # GIVEN the no-merge mode
    # WHEN asked to merge
    # THEN it refuses: such files are stored one by one
    with pytest.raises(ValueError, match="none"):
        merge_streams(MergeMode.NONE, [io.BytesIO(b"a")], io.BytesIO())


@pytest.mark.parametrize("options", [{"chunk_bytes": 0}, {"chunk_bytes": -1}, {"header_cap_bytes": 2}])
def test_invalid_sizes_raise(options):
    with pytest.raises(ValueError):
        merge_streams(MergeMode.CSV, [io.BytesIO(b"a")], io.BytesIO(), **options)


# --- name_files -----------------------------------------------------------------------------


def test_names_are_the_percent_decoded_last_path_segment():
    # GIVEN URLs with distinct last segments, one percent-encoded and one with a query
    urls = ["https://h/a/data%20file.csv", "https://h/b/caf%C3%A9.csv?x=1#frag", "https://h/2020.csv"]
    # WHEN named
    # THEN each name is the decoded last segment
    assert name_files(urls) == ["data file.csv", "café.csv", "2020.csv"]


def test_names_colliding_through_query_strings_get_their_index_as_prefix():
    # GIVEN the classic climate URLs: same path, the station and year in the query
    urls = [f"https://climate.example/bulk_data_e.html?stationID=49568&Year={y}" for y in range(2010, 2022)]
    urls.insert(2, "https://climate.example/readme.txt")
    # WHEN named
    names = name_files(urls)
    # THEN the colliding ones are told apart by position, the unique one is untouched, and it is stable
    assert names[0] == "0000-bulk_data_e.html"
    assert names[3] == "0003-bulk_data_e.html"
    assert names[2] == "readme.txt"
    assert len(set(names)) == len(urls)
    assert name_files(urls) == names


def test_index_prefix_widens_for_long_lists():
    urls = ["https://h/x.csv"] * 12_000
    names = name_files(urls)
    assert names[0] == "00000-x.csv" and names[-1] == "11999-x.csv"


def test_names_differing_only_in_case_are_disambiguated():
    # GIVEN names that clash on a case-insensitive filesystem
    # WHEN named
    # THEN both get a prefix
    assert name_files(["https://h/A.csv", "https://h/a.csv"]) == ["0000-A.csv", "0001-a.csv"]


def test_prefixed_name_never_clashes_with_a_literal_name():
    # GIVEN a URL whose name is exactly what a disambiguated name would be
    urls = ["https://h/a.csv", "https://h/b/a.csv", "https://h/0000-a.csv"]
    # WHEN named
    names = name_files(urls)
    # THEN all names are still distinct
    assert names[2] == "0000-a.csv"
    assert len({n.casefold() for n in names}) == 3


@pytest.mark.parametrize(
    "url",
    [
        "https://h/..%2F..%2Fetc%2Fpasswd",
        "https://h/a/..",
        "https://h/a/.",
        "https://h/%2e%2e",
        "https://h/x%00y%0Az%0D.csv",
        "https://h/a%5Cb.csv",
        "https://h/%E2%80%AEfdp.exe",  # right-to-left override
        "https://h/.hidden",
        "https://h/con:aux*?.csv",
        "https://h/%FF%FE.csv",  # not UTF-8
    ],
)
def test_names_are_safe(url):
    # GIVEN a URL whose last segment tries path tricks or holds control / reserved characters
    # WHEN named
    (name,) = name_files([url])
    # THEN the name is a single safe path segment
    assert "/" not in name and "\\" not in name
    assert name not in ("", ".", "..") and not name.startswith(".")
    assert all(c.isprintable() for c in name)
    assert check_key(name, source="test") == name


@pytest.mark.parametrize(
    "url", ["https://h", "https://h/", "https://h/dir/", "https://h/%20", "https://h/..."]
)
def test_empty_names_become_file(url):
    assert name_files([url]) == ["file"]


def test_long_names_are_cut_to_the_filesystem_limit_keeping_the_extension():
    # GIVEN two URLs with the same very long multibyte name
    url = "https://h/" + "é" * 300 + ".csv"
    # WHEN named
    names = name_files([url, url])
    # THEN each fits in 255 UTF-8 bytes, keeps .csv, and they differ
    for name in names:
        assert len(name.encode()) <= MAX_NAME_BYTES
        assert name.endswith("é.csv")
    assert names[0] != names[1]


def test_no_urls_no_names():
    assert name_files([]) == []


# --- properties -----------------------------------------------------------------------------

if given is not None:
    _TEXT = string.ascii_letters + string.digits + ' ,;"()/.-é°'
    _headers = st.text(alphabet=_TEXT, min_size=1, max_size=30).filter(lambda s: s.strip())
    _plain_rows = st.text(alphabet=_TEXT, min_size=1, max_size=30).filter(lambda s: s.strip())
    _quoted_rows = st.tuples(_plain_rows, _plain_rows).map(lambda ab: f'"{ab[0]}\n{ab[1]}",x')
    _rows = st.lists(st.one_of(_plain_rows, _quoted_rows), max_size=5)
    _parts = st.lists(
        st.tuples(_rows, st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.booleans()),
        min_size=1,
        max_size=6,
    )

    @settings(max_examples=200, deadline=None)
    @given(header=_headers, parts=_parts, chunk_bytes=st.integers(1, 40))
    def test_property_csv_merge_is_header_plus_all_rows_in_order(header, parts, chunk_bytes):
        # GIVEN parts sharing one header, each with its own line ending, optional BOM, maybe no final newline
        raw = []
        for rows, eol, bom, final_newline in parts:
            lines = [header.encode(), *(r.encode() for r in rows)]
            body = eol.join(lines) + (eol if final_newline or not rows else b"")
            raw.append((BOM if bom else b"") + body)
        # WHEN merged
        merged = merge(raw, chunk_bytes=chunk_bytes)
        # THEN the output is the first header, then every part's rows in order, lines never glued
        expected = header.encode() + parts[0][1]
        owed = b""
        for rows, eol, _bom, final_newline in parts:
            if rows:
                expected += owed + eol.join(r.encode() for r in rows) + (eol if final_newline else b"")
                owed = b"" if final_newline else eol
        assert merged == expected

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.text(max_size=40), max_size=12))
    def test_property_names_are_unique_safe_and_stable(segments):
        # GIVEN URLs ending in arbitrary (often colliding) text
        urls = ["https://h/d/" + s for s in segments]
        # WHEN named
        names = name_files(urls)
        # THEN there is one name per URL, unique ignoring case, each a safe key segment, stable across calls
        assert len(names) == len(urls)
        assert len({n.casefold() for n in names}) == len(names)
        for name in names:
            assert "/" not in name and not name.startswith(".")
            assert len(name.encode()) <= MAX_NAME_BYTES
            check_key(name, source="test")
        assert name_files(urls) == names

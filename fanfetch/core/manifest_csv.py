"""CSV manifests (header ``group,url`` plus optional ``key,sha256,md5,size``) and CSV tables.

Rows of one group need not be adjacent; a group's URLs keep file order. ``read_csv_rows`` is also
how a job spec reads its parameter table, so both report bad quoting the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from fanfetch.core.manifest_groups import (
    Draft,
    Problems,
    Where,
    note,
    read_group_id,
    read_hex,
    read_key,
    read_size,
    read_url,
)
from fanfetch.core.manifest_text import excerpt
from fanfetch.core.models import Source
from fanfetch.errors import ManifestError

__all__ = ["REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "read_csv", "read_csv_rows", "read_csv_header",
           "read_csv_source"]

REQUIRED_COLUMNS = ("group", "url")
OPTIONAL_COLUMNS = ("key", "sha256", "md5", "size")


def read_csv_rows(lines: Sequence[str], *, source: str) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` for each non-blank CSV record, cells stripped; ``line`` is where the record
    starts. Bad quoting raises ManifestError naming the line."""
    state = {"fed": 0, "exhausted": False}

    def feed() -> Iterator[str]:
        for line in lines:
            state["fed"] += 1
            yield line + "\n"
        state["exhausted"] = True

    reader = csv.reader(feed(), strict=True)
    last_line = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if state["exhausted"]:  # the reader wanted more input: a quote was never closed
                raise ManifestError(
                    source, "bad CSV quoting: a quoted field is never closed", line=last_line + 1
                ) from None
            raise ManifestError(source, f"bad CSV quoting: {exc}", line=reader.line_num) from None
        start, last_line = last_line + 1, reader.line_num
        cells = [cell.strip() for cell in row]
        if any(cells):
            yield start, cells


@dataclass
class _Pending:
    where: Where
    sources: list[Source] = field(default_factory=list)
    key: str | None = None
    key_line: int | None = None


def read_csv_header(cells: list[str], line: int, *, source: str) -> dict[str, int]:
    names = [cell.lower() for cell in cells]
    expected = (
        f"expected columns {','.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}); "
        f"got: {excerpt(','.join(cells))}"
    )
    for name in names:
        if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            raise ManifestError(
                source, f"unknown column {excerpt(name)}: {expected}", line=line, field="header"
            )
        if names.count(name) > 1:
            raise ManifestError(
                source, f"column {name!r} appears twice: {expected}", line=line, field="header"
            )
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise ManifestError(
            source, f"missing column(s) {', '.join(missing)}: {expected}", line=line, field="header"
        )
    return {name: index for index, name in enumerate(names)}


def read_csv(lines: Sequence[str], *, source: str, problems: Problems | None = None) -> list[Draft]:
    """One draft per distinct group id, in order of first appearance; with ``problems`` a bad row is
    noted and skipped (a bad header or bad quoting still stops the reading)."""
    rows = read_csv_rows(lines, source=source)
    first = next(rows, None)
    if first is None:
        return []
    header_line, header = first
    columns = read_csv_header(header, header_line, source=source)
    pending: dict[str, _Pending] = {}
    incomplete: set[str] = set()
    for line, cells in rows:
        try:
            _read_row(cells, columns, Where(source, line), pending)
        except ManifestError as exc:
            note(problems, exc)
            if len(cells) == len(columns):
                incomplete.add(cells[columns["group"]])
    for group_id in incomplete:  # a group missing a bad row is left out; the cross-group checks see the rest
        pending.pop(group_id, None)
    if not pending and problems:
        problems.raise_if_any()
    if not pending:
        raise ManifestError(source, "no groups: the CSV has a header but no rows", line=header_line)
    return [
        Draft(group_id=group_id, sources=tuple(g.sources), key=g.key, merge=None, where=g.where)
        for group_id, g in pending.items()
    ]


def _read_row(cells: list[str], columns: dict[str, int], where: Where, pending: dict[str, _Pending]) -> None:
    if len(cells) != len(columns):
        raise where.error(f"expected {len(columns)} fields ({','.join(columns)}), got {len(cells)}")
    group_id = read_group_id(cells[columns["group"]], where)
    source = read_csv_source(cells, columns, where)
    key_cell = cells[columns["key"]] if "key" in columns else ""
    key = read_key(key_cell, where) if key_cell else None
    group = pending.get(group_id)
    if group is None:
        group = pending[group_id] = _Pending(where)
    if key is not None:
        if group.key is None:
            group.key, group.key_line = key, where.line
        elif key != group.key:
            raise where.error(
                f"{excerpt(key)} differs from {excerpt(group.key)} given for group {excerpt(group_id)} "
                f"on line {group.key_line}; a group has one output key",
                "key",
            )
    group.sources.append(source)


def read_csv_source(cells: list[str], columns: dict[str, int], where: Where) -> Source:
    def cell(name: str) -> str:
        return cells[columns[name]] if name in columns else ""

    sha256, md5, size = cell("sha256"), cell("md5"), cell("size")
    size_value: object = int(size) if size.isascii() and size.isdigit() and len(size) <= 20 else size
    return Source(
        url=read_url(cell("url"), where),
        sha256=read_hex(sha256, where, "sha256", "sha256") if sha256 else None,
        md5=read_hex(md5, where, "md5", "md5") if md5 else None,
        size=read_size(size_value, where, "size") if size else None,
    )

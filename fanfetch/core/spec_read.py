"""Reading a job spec's sections into checked parts: the [job] templates, the [expand] axes and the [table]
rows (a CSV file beside the spec, or inline), with every problem named by file, line and field.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence

from fanfetch.core.manifest_csv import read_csv_rows
from fanfetch.core.manifest_groups import Where
from fanfetch.core.manifest_text import decode_lines, excerpt
from fanfetch.core.spec_expand import MAX_SPEC_URLS, Axis, Row, Template, axis_values
from fanfetch.errors import ManifestError

__all__ = ["check_sections", "read_template", "read_axis", "read_table", "check_names", "check_size"]

_SECTIONS = {"job": ("url", "group", "key", "merge", "on_missing"), "table": ("path", "rows"), "expand": ()}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_sections(
    spec: Mapping[str, object], at: Callable[[str], Where]
) -> dict[str, Mapping[str, object]]:
    sections: dict[str, Mapping[str, object]] = {"expand": {}}
    for name, body in spec.items():
        if name not in _SECTIONS:
            raise at(name).error(f"unknown section (expected: {', '.join(_SECTIONS)})", name)
        if not isinstance(body, Mapping):
            raise at(name).error(f"must be a table ([{name}])", name)
        for entry in body:
            if _SECTIONS[name] and entry not in _SECTIONS[name]:
                raise at(f"{name}.{entry}").error(
                    f"unknown setting (expected: {', '.join(_SECTIONS[name])})", f"{name}.{entry}"
                )
        sections[name] = body
    if "job" not in sections:
        raise at("").error("missing [job] section (with url and group)", "job")
    for required in ("url", "group"):
        if required not in sections["job"]:
            raise at("job").error("missing (required)", f"job.{required}")
    return sections


def read_template(job: Mapping[str, object], name: str, at: Callable[[str], Where]) -> Template:
    field = f"job.{name}"
    where = at(field)
    text = job[name]
    if not isinstance(text, str) or not text:
        raise where.error("must be a non-empty string template", field)
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise where.error(f"bad template: {exc} (write {{{{ and }}}} for literal braces)", field) from None
    for _, placeholder, spec, conversion in parsed:
        if placeholder is None:
            continue
        if not _NAME.match(placeholder):
            raise where.error(
                f"bad placeholder {{{placeholder}}}: use a plain name such as {{station_id}}", field
            )
        if conversion or (spec and "{" in spec):
            raise where.error(
                f"placeholder {{{placeholder}}}: conversions and nested fields are not supported", field
            )
        if placeholder not in names:
            names.append(placeholder)
    return Template(field=field, text=text, names=tuple(names))


def read_axis(name: str, value: object, at: Callable[[str], Where]) -> Axis:
    field = f"expand.{name}"
    where = at(field)
    if not _NAME.match(name):
        raise where.error("an [expand] name must be a plain name (letters, digits, _)", field)
    if isinstance(value, list):
        if not value:
            raise where.error("empty list: nothing to expand", field)
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise where.error(f"list values must be strings or integers, got {excerpt(item)}", field)
        return Axis(name, values=tuple(value))
    if not isinstance(value, Mapping):
        raise where.error("must be a list of values or a range {from = ..., to = ...}", field)
    for entry in value:
        if entry not in ("from", "to"):
            raise where.error(f"unknown setting {excerpt(entry)} (expected: from, to)", field)
    bounds = []
    for bound in ("from", "to"):
        if bound not in value:
            raise where.error(f"a range needs both from and to; {bound} is missing", field)
        item = value[bound]
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise where.error(
                f"range bound {bound} must be an integer or a column name, got {excerpt(item)}",
                f"{field}.{bound}",
            )
        bounds.append(item)
    low, high = bounds
    if isinstance(low, int) and isinstance(high, int):
        if low > high:
            raise where.error(f"empty range: from {low} is greater than to {high}", field)
        if high - low >= MAX_SPEC_URLS:
            raise where.error(f"range {low}..{high} is longer than {MAX_SPEC_URLS:,} values", field)
    return Axis(name, low=low, high=high)


def read_table(
    table: Mapping[str, object] | None,
    axes: Sequence[Axis],
    *,
    source: str,
    read_related: Callable[[str], bytes] | None,
    at: Callable[[str], Where],
) -> tuple[list[str], list[Row]]:
    """The table's column names and rows; without a table, one empty row (the spec itself)."""
    if table is None:
        return [], [Row(at("job.group"), {}, "")]
    if ("path" in table) == ("rows" in table):
        raise at("table").error("give exactly one of path (a CSV file) or rows (inline)", "table")
    if "rows" in table:
        return _read_inline_rows(table["rows"], at("table.rows"))
    path = table["path"]
    where = at("table.path")
    if not isinstance(path, str) or not path:
        raise where.error("must be the path of a CSV file, relative to the spec", "table.path")
    if read_related is None:
        raise where.error(
            "this spec cannot refer to files here; give the rows inline (table.rows)", "table.path"
        )
    try:
        data = read_related(path)
    except ManifestError as exc:
        raise where.error(f"{exc.source}: {exc.problem}", "table.path") from None
    name = _sibling(source, path)
    lines = decode_lines(data, source=name)
    records = read_csv_rows(lines, source=name)
    first = next(records, None)
    if first is None:
        raise ManifestError(name, "the table is empty (expected a header line and rows)")
    header_line, columns = first
    for index, column in enumerate(columns):
        if column in columns[:index]:
            raise ManifestError(
                name, f"column {excerpt(column)} appears twice", line=header_line, field="header"
            )
    for axis in axes:
        for column in axis.columns:
            if column not in columns:
                raise ManifestError(
                    name,
                    f"missing column {excerpt(column)} (used by expand.{axis.name}); "
                    f"columns: {_list_names(columns)}",
                    line=header_line,
                    field="header",
                )
    rows = []
    for line, cells in records:
        if len(cells) != len(columns):
            raise ManifestError(name, f"expected {len(columns)} fields, got {len(cells)}", line=line)
        rows.append(Row(Where(name, line), dict(zip(columns, cells, strict=True)), ""))
    if not rows:
        raise ManifestError(name, "the table has a header but no rows", line=header_line)
    return columns, rows


def _read_inline_rows(value: object, where: Where) -> tuple[list[str], list[Row]]:
    if not isinstance(value, list) or not value:
        raise where.error("must be a non-empty list of tables like {station_id = 50430, ...}", "table.rows")
    columns: list[str] = []
    rows = []
    for index, row in enumerate(value):
        prefix = f"table.rows[{index}]"
        if not isinstance(row, Mapping):
            raise where.error("must be a table like {station_id = 50430, ...}", prefix)
        for column, cell in row.items():
            if isinstance(cell, bool) or not isinstance(cell, (str, int)):
                raise where.error(
                    f"values must be strings or integers, got {excerpt(cell)}", f"{prefix}.{column}"
                )
            if column not in columns:
                columns.append(column)
        rows.append(Row(where, dict(row), prefix + "."))
    return columns, rows


def check_names(
    templates: Sequence[Template], axes: Sequence[Axis], columns: Sequence[str], at: Callable[[str], Where]
) -> None:
    for axis in axes:
        if axis.name in columns:
            raise at(f"expand.{axis.name}").error(
                f"{axis.name!r} is also a column of the table; rename one of them", f"expand.{axis.name}"
            )
    available = [*columns, *(axis.name for axis in axes)]
    for template in templates:
        for name in template.names:
            if name not in available:
                listed = _list_names(available) if available else "none: add a [table] or [expand]"
                raise at(template.field).error(
                    f"unknown placeholder {{{name}}} (available: {listed})", template.field
                )
    axis_names = {axis.name for axis in axes}
    group, key = templates[1], (templates[2] if len(templates) > 2 else None)
    if key is not None:
        varying = [n for n in key.names if n in axis_names and n not in group.names]
        if varying:
            raise at(key.field).error(
                f"{{{varying[0]}}} changes within a group (job.group does not use it), "
                "so a group would have several keys",
                key.field,
            )


def check_size(rows: Sequence[Row], axes: Sequence[Axis], max_urls: int, at: Callable[[str], Where]) -> None:
    """Refuse a spec that expands to more than ``max_urls`` URLs, counting rows × range lengths (O(rows)),
    before one URL is rendered: a producer would otherwise run out of memory or time half-way."""
    total = 0
    for row in rows:
        count = 1
        for axis in axes:
            count *= len(axis_values(axis, row))
        total += count
    if total > max_urls:
        field = "expand" if axes else "table"
        raise at(field).error(f"the spec expands to {total:,} URLs, over the limit of {max_urls:,} here "
                              "(a producer's memory bounds it); split the job", field)


def _list_names(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(n if len(n) <= 40 else f"{n[:40]}..." for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


def _sibling(source: str, path: str) -> str:
    """How to name ``path`` (relative to the spec ``source``) in messages: ``dir/stations.csv``."""
    if path.startswith("/") or "/" not in source:
        return path
    return f"{source.rpartition('/')[0]}/{path}"

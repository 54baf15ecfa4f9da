"""Job specs: a few lines of TOML that expand a URL template over a parameter table into groups.

The motivating job, one CSV per station merged from one download per year (``examples/climate/``)::

    [job]
    url = "https://climate.weather.gc.ca/climate_data/bulk_data_e.html?format=csv&stationID={station_id}&..."
    group = "{station_id}"               # required: rows (and expansions) with one id form one group
    key = "stations/{station_id}.csv"    # optional: default from the group id and the merge mode
    merge = "csv"                        # optional: default is the caller's (--merge)

    [table]                              # optional: the rows to expand over; exactly one of
    path = "stations.csv"                # a CSV file with a header, relative to the spec, or
    # rows = [{station_id = 50430, first_year = 1990, last_year = 2020}]   # inline rows

    [expand]                             # optional: more placeholders, expanded for every row
    year = {from = "first_year", to = "last_year"}  # inclusive range; a bound is a column or an integer
    # month = [1, 2, 3]                             # or a literal list of values

Placeholders are ``str.format`` fields naming a table column or an ``[expand]`` variable (format specs
such as ``{month:02d}`` work on integers). Values are substituted as written, not URL-encoded. Each
table row yields one group per distinct ``group`` value; the URLs of a group follow the table order,
then the ``[expand]`` variables (the first one outermost). A group id made by two rows is an error.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

from fanfetch.core.manifest_csv import read_csv_rows
from fanfetch.core.manifest_groups import (
    Draft,
    Where,
    assemble_job,
    read_group_id,
    read_key,
    read_merge,
    read_on_missing,
    read_url,
)
from fanfetch.core.manifest_text import decode_lines, decode_text, excerpt
from fanfetch.core.models import Job, MergeMode, Source
from fanfetch.errors import ManifestError

__all__ = ["MAX_SPEC_URLS", "load_spec", "parse_spec", "spec_drafts"]

# A guard against a typo such as ``to = 20200`` turning one spec into a billion requests.
MAX_SPEC_URLS = 5_000_000
_SECTIONS = {"job": ("url", "group", "key", "merge", "on_missing"), "table": ("path", "rows"), "expand": ()}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\Z")
_TOML_HEADER = re.compile(r"\s*\[+\s*([^\[\]]+?)\s*\]")
_TOML_KEY = re.compile(r"""\s*(["']?)([A-Za-z0-9_.\- ]+?)\1\s*=""")

Value = str | int


class _Locator:
    """Finds the line of a dotted key (``job.url``) in a spec's TOML text, for error messages.
    A heuristic scan (tomllib keeps no positions); None when unknown, e.g. for a spec from an event."""

    def __init__(self, text: str | None):
        self._lines: dict[str, int] = {}
        section = ""
        for number, line in enumerate((text or "").split("\n"), start=1):
            header = _TOML_HEADER.match(line)
            if header:
                section = header.group(1).replace('"', "").replace(" ", "")
                self._lines.setdefault(section, number)
                continue
            key = _TOML_KEY.match(line)
            if key:
                name = key.group(2).replace(" ", "")
                self._lines.setdefault(f"{section}.{name}" if section else name, number)

    def where(self, source: str, path: str) -> Where:
        while path:
            if path in self._lines:
                return Where(source, self._lines[path])
            path = path.rpartition(".")[0]
        return Where(source)


@dataclass(frozen=True)
class _Template:
    field: str  # "job.url"
    text: str
    names: tuple[str, ...]  # placeholders, first use first


@dataclass(frozen=True)
class _Axis:
    """One ``[expand]`` variable: a literal list, or an inclusive range whose bounds are integers
    or column names."""

    name: str
    values: tuple[Value, ...] | None = None
    low: int | str = 0
    high: int | str = 0

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(b for b in (self.low, self.high) if isinstance(b, str)) if self.values is None else ()


@dataclass(frozen=True)
class _Row:
    where: Where
    values: dict[str, Value]
    prefix: str  # "" for a CSV table (fields are column names), "table.rows[3]." for inline rows


def load_spec(
    data: bytes,
    *,
    source: str,
    read_related: Callable[[str], bytes] | None = None,
    default_merge: MergeMode = MergeMode.CONCAT,
    key_prefix: str = "",
    max_urls: int = MAX_SPEC_URLS,
) -> Job:
    """Decode a TOML job spec and expand it (see the module docstring)."""
    text = decode_text(data, source=source)
    return _expand(_decode_toml(text, source), source=source, read_related=read_related, default_merge=default_merge,
                   text=text, key_prefix=key_prefix, max_urls=max_urls)


def spec_drafts(
    data: bytes,
    *,
    source: str,
    read_related: Callable[[str], bytes] | None = None,
    max_urls: int = MAX_SPEC_URLS,
) -> Callable[[], Iterator[Draft]]:
    """The spec's groups as drafts, expanded lazily each time the returned function is called (the table is
    read once, the groups never held). Raises ManifestError on a problem found before expanding; problems
    met while expanding raise from the iterator (``load_spec`` words them all the same way)."""
    text = decode_text(data, source=source)
    spec = _decode_toml(text, source)
    expand, job, at = _prepare(spec, source=source, read_related=read_related, text=text, max_urls=max_urls)
    policy = read_on_missing(job["on_missing"], at("job.on_missing"), "job.on_missing") if "on_missing" in job \
        else None
    if policy is None:
        return expand
    return lambda: (draft._replace(on_missing=policy) for draft in expand())


def _decode_toml(text: str, source: str) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position is None:
            raise ManifestError(source, f"invalid TOML: {message}") from None
        raise ManifestError(
            source,
            f"invalid TOML: {message[: position.start()]} (column {position.group(2)})",
            line=int(position.group(1)),
        ) from None


def parse_spec(
    spec: Mapping[str, object],
    *,
    source: str,
    read_related: Callable[[str], bytes] | None = None,
    default_merge: MergeMode = MergeMode.CONCAT,
    key_prefix: str = "",
    max_urls: int = MAX_SPEC_URLS,
) -> Job:
    """Expand an already-decoded spec mapping (the TOML document's shape, e.g. inline in an event)."""
    return _expand(spec, source=source, read_related=read_related, default_merge=default_merge, text=None,
                   key_prefix=key_prefix, max_urls=max_urls)


def _expand(
    spec: Mapping[str, object],
    *,
    source: str,
    read_related: Callable[[str], bytes] | None,
    default_merge: MergeMode,
    text: str | None,
    key_prefix: str = "",
    max_urls: int = MAX_SPEC_URLS,
) -> Job:
    expand, job, at = _prepare(spec, source=source, read_related=read_related, text=text, max_urls=max_urls)
    drafts = list(expand())
    if "on_missing" in job:
        policy = read_on_missing(job["on_missing"], at("job.on_missing"), "job.on_missing")
        drafts = [draft._replace(on_missing=policy) for draft in drafts]
    return assemble_job(drafts, source=source, default_merge=default_merge, key_prefix=key_prefix)


def _prepare(
    spec: object,
    *,
    source: str,
    read_related: Callable[[str], bytes] | None,
    text: str | None,
    max_urls: int,
) -> tuple[Callable[[], Iterator[Draft]], Mapping[str, object], Callable[[str], Where]]:
    """Everything but the expansion: (a function expanding the drafts afresh, the [job] table, ``at``)."""
    locate = _Locator(text)

    def at(path: str) -> Where:
        return locate.where(source, path)

    if not isinstance(spec, Mapping):
        raise ManifestError(source, "a job spec must be a table with a [job] section")
    sections = _check_sections(spec, at)
    job = sections["job"]
    templates = [_read_template(job, name, at) for name in ("url", "group", "key") if name in job]
    merge = read_merge(job["merge"], at("job.merge"), "job.merge") if "merge" in job else None
    axes = [_read_axis(name, value, at) for name, value in sections["expand"].items()]
    columns, rows = _read_table(sections.get("table"), axes, source=source, read_related=read_related, at=at)
    _check_names(templates, axes, columns, at)
    url, group, key = templates[0], templates[1], (templates[2] if len(templates) > 2 else None)
    _check_size(rows, axes, max_urls, at)  # counted from the table and ranges: nothing expanded yet
    return lambda: _draft_groups(rows, axes, url, group, key, merge), job, at


def _check_sections(
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


def _read_template(job: Mapping[str, object], name: str, at: Callable[[str], Where]) -> _Template:
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
    return _Template(field=field, text=text, names=tuple(names))


def _read_axis(name: str, value: object, at: Callable[[str], Where]) -> _Axis:
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
        return _Axis(name, values=tuple(value))
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
    return _Axis(name, low=low, high=high)


def _read_table(
    table: Mapping[str, object] | None,
    axes: Sequence[_Axis],
    *,
    source: str,
    read_related: Callable[[str], bytes] | None,
    at: Callable[[str], Where],
) -> tuple[list[str], list[_Row]]:
    """The table's column names and rows; without a table, one empty row (the spec itself)."""
    if table is None:
        return [], [_Row(at("job.group"), {}, "")]
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
        rows.append(_Row(Where(name, line), dict(zip(columns, cells, strict=True)), ""))
    if not rows:
        raise ManifestError(name, "the table has a header but no rows", line=header_line)
    return columns, rows


def _read_inline_rows(value: object, where: Where) -> tuple[list[str], list[_Row]]:
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
        rows.append(_Row(where, dict(row), prefix + "."))
    return columns, rows


def _check_names(
    templates: Sequence[_Template], axes: Sequence[_Axis], columns: Sequence[str], at: Callable[[str], Where]
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


def _check_size(rows: Sequence[_Row], axes: Sequence[_Axis], max_urls: int, at: Callable[[str], Where]) -> None:
    """Refuse a spec that expands to more than ``max_urls`` URLs, counting rows × range lengths (O(rows)),
    before one URL is rendered: a producer would otherwise run out of memory or time half-way."""
    total = 0
    for row in rows:
        count = 1
        for axis in axes:
            count *= len(_axis_values(axis, row))
        total += count
    if total > max_urls:
        field = "expand" if axes else "table"
        raise at(field).error(f"the spec expands to {total:,} URLs, over the limit of {max_urls:,} here "
                              "(a producer's memory bounds it); split the job", field)


def _draft_groups(
    rows: Sequence[_Row],
    axes: Sequence[_Axis],
    url: _Template,
    group: _Template,
    key: _Template | None,
    merge: MergeMode | None,
) -> Iterator[Draft]:
    axis_names = [axis.name for axis in axes]
    group_varies = any(name in axis_names for name in group.names)
    total = 0
    for row in rows:
        values: dict[str, Value] = dict(row.values)
        for template in (url, group, key):
            for name in template.names if template else ():
                if name not in values and name not in axis_names:
                    raise row.where.error("missing (used by the templates)", f"{row.prefix}{name}")
        choices = [_axis_values(axis, row) for axis in axes]
        count = 1
        for choice in choices:
            count *= len(choice)
        total += count
        if total > MAX_SPEC_URLS:
            raise row.where.error(f"the spec expands to more than {MAX_SPEC_URLS:,} URLs; split the job")
        found: dict[str, tuple[list[Source], str | None]] = {}
        fixed_id = None if group_varies else _group_id(group, values, row)
        for combination in product(*choices):
            values.update(zip(axis_names, combination, strict=True))
            group_id = fixed_id if fixed_id is not None else _group_id(group, values, row)
            entry = found.get(group_id)
            if entry is None:
                group_key = None if key is None else read_key(_render(key, values, row), row.where, key.field)
                entry = found[group_id] = ([], group_key)
            entry[0].append(Source(url=read_url(_render(url, values, row), row.where, url.field)))
        for group_id, (sources, group_key) in found.items():
            yield Draft(
                group_id=group_id, sources=tuple(sources), key=group_key, merge=merge, where=row.where
            )


def _group_id(template: _Template, values: Mapping[str, Value], row: _Row) -> str:
    return read_group_id(_render(template, values, row), row.where, template.field)


def _render(template: _Template, values: Mapping[str, Value], row: _Row) -> str:
    try:
        return template.text.format_map(values)
    except (ValueError, TypeError) as exc:
        raise row.where.error(f"cannot fill in the template: {exc}", template.field) from None


def _axis_values(axis: _Axis, row: _Row) -> Sequence[Value]:
    if axis.values is not None:
        return axis.values
    low = _bound(axis, axis.low, "from", row)
    high = _bound(axis, axis.high, "to", row)
    if low > high:  # both bounds literal is caught when the spec is read, so a column is involved
        shown = ", ".join(f"{column} = {row.values[column]}" for column in axis.columns)
        raise row.where.error(
            f"expand.{axis.name}: empty range, from {low} is greater than to {high} ({shown})",
            f"{row.prefix}{axis.columns[0]}",
        )
    if high - low >= MAX_SPEC_URLS:
        raise row.where.error(
            f"expand.{axis.name}: range {low}..{high} is longer than {MAX_SPEC_URLS:,} values",
            f"{row.prefix}{axis.columns[0]}",
        )
    return range(low, high + 1)


def _bound(axis: _Axis, bound: int | str, side: str, row: _Row) -> int:
    if isinstance(bound, int):
        return bound
    if bound not in row.values:
        raise row.where.error(f"missing (used by expand.{axis.name}.{side})", f"{row.prefix}{bound}")
    value = row.values[bound]
    if isinstance(value, int):
        return value
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        raise row.where.error(
            f"expand.{axis.name}.{side} needs an integer, got {excerpt(value)}", f"{row.prefix}{bound}"
        )
    return int(text)


def _list_names(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(n if len(n) <= 40 else f"{n[:40]}..." for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


def _sibling(source: str, path: str) -> str:
    """How to name ``path`` (relative to the spec ``source``) in messages: ``dir/stations.csv``."""
    if path.startswith("/") or "/" not in source:
        return path
    return f"{source.rpartition('/')[0]}/{path}"

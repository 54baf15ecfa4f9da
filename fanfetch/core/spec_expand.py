"""Expanding a read job spec into group drafts: the templates rendered over each table row and every
combination of the [expand] axes, bounded by ``MAX_SPEC_URLS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

from fanfetch.core.manifest_groups import Draft, Where, read_group_id, read_key, read_url
from fanfetch.core.manifest_text import excerpt
from fanfetch.core.models import MergeMode, Source

__all__ = ["MAX_SPEC_URLS", "Value", "Template", "Axis", "Row", "draft_groups", "axis_values"]

# A guard against a typo such as ``to = 20200`` turning one spec into a billion requests.
MAX_SPEC_URLS = 5_000_000

Value = str | int


@dataclass(frozen=True)
class Template:
    """A ``[job]`` template and the placeholders it uses."""

    field: str  # "job.url"
    text: str
    names: tuple[str, ...]  # placeholders, first use first


@dataclass(frozen=True)
class Axis:
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
class Row:
    """One table row (a CSV line or an inline table) and where to point at it in messages."""

    where: Where
    values: dict[str, Value]
    prefix: str  # "" for a CSV table (fields are column names), "table.rows[3]." for inline rows


def draft_groups(
    rows: Sequence[Row],
    axes: Sequence[Axis],
    url: Template,
    group: Template,
    key: Template | None,
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
        choices = [axis_values(axis, row) for axis in axes]
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


def _group_id(template: Template, values: Mapping[str, Value], row: Row) -> str:
    return read_group_id(_render(template, values, row), row.where, template.field)


def _render(template: Template, values: Mapping[str, Value], row: Row) -> str:
    try:
        return template.text.format_map(values)
    except (ValueError, TypeError) as exc:
        raise row.where.error(f"cannot fill in the template: {exc}", template.field) from None


def axis_values(axis: Axis, row: Row) -> Sequence[Value]:
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


def _bound(axis: Axis, bound: int | str, side: str, row: Row) -> int:
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

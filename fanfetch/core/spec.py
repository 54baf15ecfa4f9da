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
import tomllib
from collections.abc import Callable, Iterator, Mapping

from fanfetch.core.manifest_groups import Draft, Where, assemble_job, read_merge, read_on_missing
from fanfetch.core.manifest_text import decode_text
from fanfetch.core.models import Job, MergeMode
from fanfetch.core.spec_expand import MAX_SPEC_URLS, draft_groups
from fanfetch.core.spec_read import check_names, check_sections, check_size, read_axis, read_table, read_template
from fanfetch.errors import ManifestError

__all__ = ["load_spec", "parse_spec", "spec_drafts"]

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\Z")
_TOML_HEADER = re.compile(r"\s*\[+\s*([^\[\]]+?)\s*\]")
_TOML_KEY = re.compile(r"""\s*(["']?)([A-Za-z0-9_.\- ]+?)\1\s*=""")


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


def load_spec(
    data: bytes,
    *,
    source: str,
    read_related: Callable[[str], bytes] | None = None,
    default_merge: MergeMode = MergeMode.CONCAT,
    key_prefix: str = "",
    max_urls: int | None = None,
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
    max_urls: int | None = None,
) -> Callable[[], Iterator[Draft]]:
    """The spec's groups as drafts, expanded lazily each time the returned function is called (the table is
    read once, the groups never held). Raises ManifestError on a problem found before expanding; problems
    met while expanding raise from the iterator (``load_spec`` words them all the same way)."""
    text = decode_text(data, source=source)
    spec = _decode_toml(text, source)
    return _prepare(spec, source=source, read_related=read_related, text=text, max_urls=max_urls)


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
    max_urls: int | None = None,
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
    max_urls: int | None = None,
) -> Job:
    expand = _prepare(spec, source=source, read_related=read_related, text=text, max_urls=max_urls)
    return assemble_job(list(expand()), source=source, default_merge=default_merge, key_prefix=key_prefix)


def _prepare(
    spec: object,
    *,
    source: str,
    read_related: Callable[[str], bytes] | None,
    text: str | None,
    max_urls: int | None,
) -> Callable[[], Iterator[Draft]]:
    """Everything but the expansion: a function expanding the drafts afresh (the job's on_missing applied)."""
    locate = _Locator(text)

    def at(path: str) -> Where:
        return locate.where(source, path)

    if not isinstance(spec, Mapping):
        raise ManifestError(source, "a job spec must be a table with a [job] section")
    sections = check_sections(spec, at)
    job = sections["job"]
    templates = [read_template(job, name, at) for name in ("url", "group", "key") if name in job]
    merge = read_merge(job["merge"], at("job.merge"), "job.merge") if "merge" in job else None
    on_missing = read_on_missing(job["on_missing"], at("job.on_missing"), "job.on_missing") if "on_missing" in job \
        else None
    axes = [read_axis(name, value, at) for name, value in sections["expand"].items()]
    columns, rows = read_table(sections.get("table"), axes, source=source, read_related=read_related, at=at)
    check_names(templates, axes, columns, at)
    url, group, key = templates[0], templates[1], (templates[2] if len(templates) > 2 else None)
    limit = MAX_SPEC_URLS if max_urls is None else max_urls  # None: the library's own limit
    check_size(rows, axes, limit, at)  # counted from the table and ranges: nothing expanded yet

    def expand() -> Iterator[Draft]:
        drafts = draft_groups(rows, axes, url, group, key, merge)
        return drafts if on_missing is None else (draft._replace(on_missing=on_missing) for draft in drafts)

    return expand

"""JSON Lines manifests (one group per line) and inline event groups: the same record rules.

``{"group": "50430", "urls": ["https://...", {"url": "https://...", "sha256": "..."}], "key": "...",
"merge": "csv", "on_missing": "skip"}``; ``key``, ``merge`` and ``on_missing`` are optional, unknown fields
are errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from fanfetch.core.manifest_groups import (
    Draft,
    Problems,
    Where,
    note,
    read_group_id,
    read_hex,
    read_key,
    read_merge,
    read_on_missing,
    read_size,
    read_url,
)
from fanfetch.core.models import Source
from fanfetch.errors import ManifestError

__all__ = ["FIELDS", "read_jsonl", "read_records", "draft_from_record", "decode_line"]

FIELDS = ("group", "urls", "key", "merge", "on_missing")
_URL_FIELDS = ("url", "sha256", "md5", "size")
_FIELD_SET = frozenset(FIELDS)


class _DuplicateField(ValueError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateField(name)
            seen.add(name)
    return record


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def read_jsonl(lines: Sequence[str], *, source: str, problems: Problems | None = None) -> list[Draft]:
    """One draft per non-blank, non-``#`` line; with ``problems`` a bad line is noted and skipped."""
    drafts = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = Where(source, number)
        try:
            drafts.append(draft_from_record(decode_line(stripped, where), where))
        except ManifestError as exc:
            note(problems, exc)
    return drafts


def decode_line(text: str, where: Where) -> object:
    try:
        return _DECODER.decode(text)
    except _DuplicateField as exc:
        raise where.error("field appears twice in the same line", exc.name) from None
    except json.JSONDecodeError as exc:
        raise where.error(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise where.error("invalid JSON: nested too deeply") from None


def read_records(
    records: Sequence[Mapping[str, object]], *, source: str, problems: Problems | None = None
) -> list[Draft]:
    """One draft per record of an event's ``groups`` list; the "line" is the 1-based index."""
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise ManifestError(source, "groups must be a list of objects", field="groups")
    drafts = []
    for index, record in enumerate(records, start=1):
        try:
            drafts.append(draft_from_record(record, Where(source, index)))
        except ManifestError as exc:
            note(problems, exc)
    return drafts


def draft_from_record(record: object, where: Where) -> Draft:
    """Validate one group record (a decoded JSON object) field by field."""
    if not isinstance(record, dict) and not isinstance(record, Mapping):  # dict first: the fast check
        raise where.error('each line must be a JSON object like {"group": ..., "urls": [...]}')
    if not record.keys() <= _FIELD_SET:
        unknown = next(name for name in record if name not in _FIELD_SET)
        raise where.error(f"unknown field (expected: {', '.join(FIELDS)})", str(unknown))
    if "group" not in record:
        raise where.error("missing (every line needs a group id)", "group")
    group_id = read_group_id(record["group"], where)
    urls = record.get("urls")
    if urls is None:
        raise where.error("missing (every group needs a non-empty list of URLs)", "urls")
    if not isinstance(urls, list) and (isinstance(urls, (str, bytes)) or not isinstance(urls, Sequence)):
        raise where.error("must be a list of URLs", "urls")
    if not urls:
        raise where.error("empty list: a group needs at least one URL", "urls")
    sources = tuple(_read_source(item, where, f"urls[{i}]") for i, item in enumerate(urls))
    key = record.get("key")
    merge = record.get("merge")
    return Draft(
        group_id=group_id,
        sources=sources,
        key=None if key is None else read_key(key, where),
        merge=None if merge is None else read_merge(merge, where),
        where=where,
        on_missing=None if record.get("on_missing") is None else read_on_missing(record["on_missing"], where),
    )


def _read_source(item: object, where: Where, field: str) -> Source:
    if isinstance(item, str) or not isinstance(item, Mapping):
        return Source(url=read_url(item, where, field))
    for name in item:
        if name not in _URL_FIELDS:
            raise where.error(f"unknown field (expected: {', '.join(_URL_FIELDS)})", f"{field}.{name}")
    if "url" not in item:
        raise where.error("missing", f"{field}.url")
    sha256, md5, size = item.get("sha256"), item.get("md5"), item.get("size")
    return Source(
        url=read_url(item["url"], where, f"{field}.url"),
        sha256=None if sha256 is None else read_hex(sha256, where, f"{field}.sha256", "sha256"),
        md5=None if md5 is None else read_hex(md5, where, f"{field}.md5", "md5"),
        size=None if size is None else read_size(size, where, f"{field}.size"),
    )

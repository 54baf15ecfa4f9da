"""Manifests read twice instead of held: pass 1 checks every rule keeping only 64-bit hashes of the group ids
and keys (plus counts, the job id's running hash and the hosts), pass 2 reads the groups again, one at a time.

A problem found in pass 1 is worded by the whole-manifest checker (``parse_manifest``), so the messages are
the same by construction: ``scan_*`` then return None and the caller falls back to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from fanfetch.core.limits import utf8_bytes
from fanfetch.core.manifest_csv import read_csv_header, read_csv_rows, read_csv_source
from fanfetch.core.manifest_groups import Draft, Where, check_stored_keys, finish_group, read_group_id, read_key
from fanfetch.core.manifest_jsonl import decode_line, draft_from_record
from fanfetch.core.manifest_plain import Plain, plain_group, read_plain
from fanfetch.core.manifest_scan import HostSeen, ManifestScan, Tracker, host_port_of
from fanfetch.core.manifest_text import MAX_LINE_BYTES
from fanfetch.core.models import Group, Job, MergeMode, OnMissing, Source
from fanfetch.errors import ManifestError

__all__ = ["StreamedJob", "hosts_of_groups", "scan_lines", "stream_lines", "scan_drafts", "stream_drafts",
           "STREAMED_FORMATS"]

STREAMED_FORMATS = ("jsonl", "csv")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class StreamedJob:
    """A validated job whose groups are read again from the manifest (pass 2) each time they are iterated;
    only its id, sizes and hosts are held. ``from_job`` wraps a job held in memory the same way."""

    job_id: str
    group_count: int
    file_count: int
    hosts: tuple[HostSeen, ...]
    read_groups: Callable[[], Iterator[Group]]
    default_on_missing: OnMissing | None = None

    def iter_groups(self) -> Iterator[Group]:
        """The groups in manifest order, ``on_missing`` filled in from the run's default where not given."""
        default = self.default_on_missing
        groups = self.read_groups()
        return groups if default is None else (group.with_default_on_missing(default) for group in groups)

    def with_default_on_missing(self, default: OnMissing) -> StreamedJob:
        return replace(self, default_on_missing=default)

    @classmethod
    def from_job(cls, job: Job) -> StreamedJob:
        return cls(job_id=job.job_id, group_count=len(job.groups), file_count=job.file_count,
                   hosts=hosts_of_groups(job.groups), read_groups=lambda: iter(job.groups))


def hosts_of_groups(groups: Iterable[Group]) -> tuple[HostSeen, ...]:
    """Each distinct (host, port) the groups download from, in order, with the first group that does."""
    seen: dict[tuple[str, int], HostSeen] = {}
    for group in groups:
        for source in group.sources:
            host_port = host_port_of(source.url)
            if host_port not in seen:
                seen[host_port] = HostSeen(host_port[0], host_port[1], group.group_id)
    return tuple(seen.values())


# --- lines -------------------------------------------------------------------------------------------------


class _Bad(Exception):
    """Internal: pass 1 met a problem (the whole-manifest check words it)."""


def _text_lines(raw_lines: Iterable[bytes]) -> Iterator[str]:
    """``decode_lines`` one line at a time: BOM, the 1 MiB limit, UTF-8, ``\\r\\n``. Raises _Bad."""
    first = True
    for raw in raw_lines:
        if first:
            raw = raw.removeprefix(_BOM)
            first = False
        body = raw[:-1] if raw.endswith(b"\n") else raw
        if len(body) > MAX_LINE_BYTES:
            raise _Bad
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad from None
        yield text[:-1] if text.endswith("\r") else text


# --- JSON Lines --------------------------------------------------------------------------------------------


def _full_group(text: str, where: Where, default_merge: MergeMode, key_prefix: str) -> Group:
    """The line's group by the whole-manifest rules. Raises _Bad on a problem."""
    try:
        draft = draft_from_record(decode_line(text, where), where)
        group = finish_group(draft, default_merge)
        check_stored_keys(group, draft, key_prefix)
    except ManifestError:
        raise _Bad from None
    return group


def _jsonl_items(raw_lines: Iterable[bytes], *, source: str, default_merge: MergeMode,
                 key_prefix: str) -> Iterator[Plain | Group]:
    """Each group of a JSON Lines manifest, plain or full. Raises _Bad on a problem."""
    prefix_bytes = utf8_bytes(key_prefix)
    read_line = read_plain
    number = 0
    for raw in raw_lines:  # _text_lines, inlined: this loop runs once per group of a million
        number += 1
        if number == 1:
            raw = raw.removeprefix(_BOM)
        if len(raw) > MAX_LINE_BYTES and len(raw[:-1] if raw.endswith(b"\n") else raw) > MAX_LINE_BYTES:
            raise _Bad
        try:
            stripped = raw.decode("utf-8").strip()  # JSON Lines strips each line: "\r\n" and "\n" go with it
        except UnicodeDecodeError:
            raise _Bad from None
        if not stripped or stripped[0] == "#":
            continue
        plain = read_line(stripped, default_merge, prefix_bytes)
        yield plain if plain is not None else _full_group(stripped, Where(source, number), default_merge, key_prefix)


# --- CSV ---------------------------------------------------------------------------------------------------


def _csv_drafts(raw_lines: Iterable[bytes], *, source: str) -> Iterator[Draft]:
    """The groups of a CSV manifest whose rows of one group are adjacent, in order. Rows of a group seen again
    later make two drafts with one id: pass 1 sees a repeated id and leaves the file to the whole check (which
    gathers non-adjacent rows in memory). Raises _Bad on a problem."""
    try:
        rows = read_csv_rows(_text_lines(raw_lines), source=source)
        first = next(rows, None)
        if first is None:
            raise _Bad
        columns = read_csv_header(first[1], first[0], source=source)
        current: tuple[str, list[Source], str | None, Where] | None = None
        for line, cells in rows:
            where = Where(source, line)
            if len(cells) != len(columns):
                raise _Bad
            group_id = read_group_id(cells[columns["group"]], where)
            url = read_csv_source(cells, columns, where)
            key_cell = cells[columns["key"]] if "key" in columns else ""
            key = read_key(key_cell, where) if key_cell else None
            if current is not None and current[0] == group_id:
                if key is not None:
                    if current[2] is None:
                        current = (current[0], current[1], key, current[3])
                    elif key != current[2]:
                        raise _Bad
                current[1].append(url)
                continue
            if current is not None:
                yield Draft(group_id=current[0], sources=tuple(current[1]), key=current[2], merge=None,
                            where=current[3])
            current = (group_id, [url], key, where)
        if current is None:
            raise _Bad  # a header and no rows
        yield Draft(group_id=current[0], sources=tuple(current[1]), key=current[2], merge=None, where=current[3])
    except ManifestError:
        raise _Bad from None


def _finished_drafts(drafts: Iterable[Draft], *, default_merge: MergeMode, key_prefix: str) -> Iterator[Group]:
    for draft in drafts:
        try:
            group = finish_group(draft, default_merge)
            check_stored_keys(group, draft, key_prefix)
        except ManifestError:
            raise _Bad from None
        yield group


# --- the two passes ----------------------------------------------------------------------------------------


def _items(raw_lines: Iterable[bytes], *, fmt: str, source: str, default_merge: MergeMode,
           key_prefix: str) -> Iterator[Plain | Group]:
    if fmt == "jsonl":
        return _jsonl_items(raw_lines, source=source, default_merge=default_merge, key_prefix=key_prefix)
    if fmt == "csv":
        return _finished_drafts(_csv_drafts(raw_lines, source=source), default_merge=default_merge,
                                key_prefix=key_prefix)
    raise ValueError(f"not a line format: {fmt!r}")


def _scan(items: Iterable[Plain | Group], *, key_prefix: str) -> ManifestScan | None:
    tracker = Tracker(key_prefix=key_prefix)
    add_plain, add_group = tracker.add_plain, tracker.add_group
    try:
        for item in items:
            if type(item) is tuple:
                add_plain(item)
            else:
                add_group(item)
    except _Bad:
        return None
    return tracker.finish()


def scan_lines(raw_lines: Iterable[bytes], *, fmt: str, source: str, default_merge: MergeMode,
               key_prefix: str = "") -> ManifestScan | None:
    """Pass 1 over a JSON Lines or CSV manifest's raw lines (``\\n`` kept or not): every rule of
    ``parse_manifest`` checked, the groups never held. None: a problem, or a CSV whose group's rows are not
    adjacent; ``parse_manifest`` on the whole input then raises the exact error (or returns the Job)."""
    return _scan(_items(raw_lines, fmt=fmt, source=source, default_merge=default_merge, key_prefix=key_prefix),
                 key_prefix=key_prefix)


def stream_lines(raw_lines: Iterable[bytes], *, fmt: str, source: str, default_merge: MergeMode,
                 key_prefix: str = "", expected: int | None = None) -> Iterator[Group]:
    """Pass 2: the groups of a manifest ``scan_lines`` accepted, one at a time, in manifest order. Input that
    no longer passes (changed since pass 1) raises ManifestError naming the source."""
    items = _items(raw_lines, fmt=fmt, source=source, default_merge=default_merge, key_prefix=key_prefix)
    return _stream(items, source=source, expected=expected)


def _stream(items: Iterator[Plain | Group], *, source: str, expected: int | None) -> Iterator[Group]:
    count = 0
    try:
        for item in items:
            count += 1
            yield plain_group(item) if type(item) is tuple else item
    except _Bad:
        raise ManifestError(source, "the manifest changed after it was checked; run again") from None
    if expected is not None and count != expected:
        raise ManifestError(source, f"the manifest changed after it was checked ({count:,} groups, "
                                    f"{expected:,} checked); run again")


def scan_drafts(drafts: Callable[[], Iterable[Draft]], *, default_merge: MergeMode,
                key_prefix: str = "") -> ManifestScan | None:
    """Pass 1 over drafts made lazily (a job spec's expansion); None on any problem, as ``scan_lines``."""
    try:
        return _scan(_finished_drafts(drafts(), default_merge=default_merge, key_prefix=key_prefix),
                     key_prefix=key_prefix)
    except ManifestError:
        return None


def stream_drafts(drafts: Callable[[], Iterable[Draft]], *, source: str, default_merge: MergeMode,
                  key_prefix: str = "", expected: int | None = None) -> Iterator[Group]:
    """Pass 2 over drafts made lazily: the groups ``scan_drafts`` accepted, in order."""
    return _stream(_finished_drafts(drafts(), default_merge=default_merge, key_prefix=key_prefix),
                   source=source, expected=expected)

"""Manifests read twice instead of held: pass 1 checks every rule keeping only 64-bit hashes of the group ids
and keys (plus counts, the job id's running hash and the hosts), pass 2 reads the groups again, one at a time.

A problem found in pass 1 is worded by the whole-manifest checker (``parse_manifest``), so the messages are
the same by construction: ``scan_*`` then return None and the caller falls back to it.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from fanfetch.core.bookkeeping import MAX_ENCODED_CHARS, failure_record_key
from fanfetch.core.limits import (
    DONE_MARKER_NAME,
    MAX_GROUP_ID_BYTES,
    RESERVED_JOB_ID_BYTES,
    S3_MAX_KEY_BYTES,
    utf8_bytes,
)
from fanfetch.core.manifest_csv import _read_header, _read_source, read_csv_rows
from fanfetch.core.manifest_groups import (
    _JOB_ID_VERSION,
    MAX_URL_CHARS,
    Draft,
    Where,
    _check_stored_keys,
    _finish,
    read_group_id,
    read_key,
)
from fanfetch.core.manifest_jsonl import _decode, draft_from_record
from fanfetch.core.manifest_rules import MAX_COMPONENT_BYTES, RESERVED_FOLDERS, key_identity
from fanfetch.core.manifest_text import MAX_LINE_BYTES
from fanfetch.core.merge import name_files
from fanfetch.core.models import Group, Job, MergeMode, OnMissing, Source
from fanfetch.core.validate import MAX_KEY_BYTES
from fanfetch.errors import ManifestError

__all__ = ["HostSeen", "ManifestScan", "StreamedJob", "hosts_of_groups", "scan_lines", "stream_lines",
           "scan_drafts", "stream_drafts", "STREAMED_FORMATS"]

STREAMED_FORMATS = ("jsonl", "csv")
_BOM = b"\xef\xbb\xbf"
_RESERVED = frozenset(name.lower() for name in RESERVED_FOLDERS)
# The longest failure record key any group id can have (its id encoded: at most MAX_ENCODED_CHARS); a prefix
# leaving less room sends every line to the full path, which measures the key itself.
_FAILURE_RECORD_MAX_BYTES = len(failure_record_key("j" * RESERVED_JOB_ID_BYTES, "")) + MAX_ENCODED_CHARS
_JOB_ID_CHUNK = 4096  # records joined per sha256 update

# The common JSON Lines shape, recognised without the JSON decoder: fields in the documented order, plain
# strings of printable ASCII without space, quote or backslash (so the text is the value, and no rule about
# whitespace, control, invisible or non-ASCII characters can apply), URLs that urlsplit reads as written (a
# plain host: no user info, no IPv6 brackets; a port 1-65535). Anything else takes the full path.
_PLAIN = r'[!#-\[\]-~]'
_NOT_QUERY = r'[!$->@-\[\]-~]'  # _PLAIN without "?" and "#"
_WS = r'[ \t]*'
_PORT = r'(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})'
_HEAD = rf'https?://[A-Za-z0-9._-]+(?::{_PORT})?'
_URL_TEXT = rf'{_HEAD}(?:/{_NOT_QUERY}*)?(?:[?#]{_PLAIN}*)?'
_LINE = re.compile(
    r'\{' + _WS + r'"group"' + _WS + ':' + _WS + rf'(?:"({_PLAIN}+)"|(-?(?:0|[1-9][0-9]{{0,17}})))' + _WS + ','
    + _WS + r'"urls"' + _WS + ':' + _WS + r'\[' + _WS
    + rf'"(({_HEAD})((?:/{_NOT_QUERY}*)?)(?:[?#]{_PLAIN}*)?)"'  # the first URL: whole, head, path
    + rf'((?:{_WS},{_WS}"{_URL_TEXT}")*)' + _WS + r'\]'  # the others
    + rf'(?:{_WS},{_WS}"key"{_WS}:{_WS}"({_PLAIN}+)")?'
    + rf'(?:{_WS},{_WS}"merge"{_WS}:{_WS}"(csv|concat|none|csv-lenient)")?'
    + rf'(?:{_WS},{_WS}"on_missing"{_WS}:{_WS}"(fail|skip)")?'
    + _WS + r'\}'
)
_OTHER_URL = re.compile(rf'"(({_HEAD})[^"]*)"')  # one of the others (whole, head): checked by _LINE
_URL_HEAD = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*')
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,7}\Z")
_MERGES = {mode.value: mode for mode in MergeMode}
_MODE_NAMES = {mode: mode.value for mode in MergeMode}
_ON_MISSING = {policy.value: policy for policy in OnMissing}


@dataclass(frozen=True)
class HostSeen:
    """A host and port the manifest downloads from, and the first group that does."""

    host: str
    port: int
    group_id: str


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
            parts = urlsplit(source.url)
            host_port = ((parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80))
            if host_port not in seen:
                seen[host_port] = HostSeen(host_port[0], host_port[1], group.group_id)
    return tuple(seen.values())


@dataclass(frozen=True)
class ManifestScan:
    """What pass 1 keeps of a valid manifest: its job id, sizes and hosts (never its groups)."""

    job_id: str
    groups: int
    files: int
    hosts: tuple[HostSeen, ...]


# A JSON Lines group of the plain shape, key and merge mode final, strings only (a tuple: one per line, cheap):
# (group id, URLs, URL heads "scheme://host[:port]", key, merge mode, on_missing or None).
_Plain = tuple


def _plain_group(plain: _Plain) -> Group:
    group_id, urls, _, key, merge, on_missing = plain
    return Group(group_id=group_id, sources=tuple(Source(url=url) for url in urls), key=key, merge=merge,
                 on_missing=on_missing)


class _Tracker:
    """Pass 1's memory: hashes of ids and key identities in arrays, counts, the job id's hash, the hosts."""

    def __init__(self, *, key_prefix: str):
        self.ids = array("q")
        self.files = array("q")  # key identities of output files
        self.folders = array("q")  # key identities of output folders (merge none), without the slash
        self.prefixes = array("q")  # identities of every folder a key needs
        self.prefix_bytes = utf8_bytes(key_prefix)
        self.groups = 0
        self.file_count = 0
        self._digest = hashlib.sha256(_JOB_ID_VERSION + b"[")
        self._digest_started = False
        self._records: list[str] = []
        self._heads: dict[str, tuple[str, int]] = {}
        self._hosts: dict[tuple[str, int], HostSeen] = {}

    def add_plain(self, plain: _Plain) -> None:
        group_id, urls, heads, key, merge, _ = plain
        self.groups += 1
        self.file_count += len(urls)
        self.ids.append(hash(group_id))
        identity = key.lower()  # key_identity of printable ASCII
        if identity[-1] == "/":
            identity = identity[:-1]
            self.folders.append(hash(identity))
        else:
            self.files.append(hash(identity))
        if "/" in identity:
            self._note_prefixes(identity)
        if len(urls) == 1:
            self._records.append(f'["{group_id}","{key}","{_MODE_NAMES[merge]}",[["{urls[0]}",null,null,null]]]')
        else:
            sources = ",".join(f'["{url}",null,null,null]' for url in urls)
            self._records.append(f'["{group_id}","{key}","{_MODE_NAMES[merge]}",[{sources}]]')
        if len(self._records) >= _JOB_ID_CHUNK:
            self._flush()
        for head in heads:
            if head not in self._heads:
                self._note_head(head, group_id)

    def add_group(self, group: Group) -> None:
        self.groups += 1
        self.file_count += len(group.sources)
        self.ids.append(hash(group.group_id))
        identity = key_identity(group.key)
        if identity.endswith("/"):
            identity = identity[:-1]
            self.folders.append(hash(identity))
        else:
            self.files.append(hash(identity))
        if "/" in identity:
            self._note_prefixes(identity)
        self._records.append(json.dumps([group.group_id, group.key, group.merge.value,
                                         [[s.url, s.sha256, s.md5, s.size] for s in group.sources]],
                                        ensure_ascii=False, separators=(",", ":")))
        if len(self._records) >= _JOB_ID_CHUNK:
            self._flush()
        for source in group.sources:
            match = _URL_HEAD.match(source.url)
            head = match.group() if match else source.url
            if head not in self._heads:
                self._note_head(head, group.group_id)

    def _note_prefixes(self, identity: str) -> None:
        # key_identity of a prefix is the prefix of the identity: "/" is a starter, folds and composes with nothing
        parts = identity.split("/")
        for depth in range(1, len(parts)):
            self.prefixes.append(hash("/".join(parts[:depth])))

    def _note_head(self, head: str, group_id: str) -> None:
        parts = urlsplit(head)
        host_port = ((parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80))
        self._heads[head] = host_port
        if host_port not in self._hosts:
            self._hosts[host_port] = HostSeen(host_port[0], host_port[1], group_id)

    def _flush(self) -> None:
        if self._records:
            prefix = b"," if self._digest_started else b""
            self._digest.update(prefix + ",".join(self._records).encode("utf-8"))
            self._digest_started = True
            self._records.clear()

    def finish(self) -> ManifestScan | None:
        """The scan, or None when a cross-group rule may be broken (the whole-manifest check then says how)."""
        if not self.groups:
            return None  # "no groups": worded by the whole check
        if _repeats(self.ids) or _repeats(self.files) or _repeats(self.folders):
            return None
        if self.folders and not _disjoint(self.folders, self.files):
            return None  # a folder named like a file
        if self.prefixes:
            needed = set(self.prefixes)
            if not needed.isdisjoint(self.files) or not needed.isdisjoint(self.folders):
                return None  # a key needs a file to be a folder, or lies in a none-folder
        self._flush()
        self._digest.update(b"]")
        return ManifestScan(job_id=self._digest.hexdigest()[:16], groups=self.groups, files=self.file_count,
                            hosts=tuple(self._hosts.values()))


def _repeats(values: array) -> bool:
    return len(set(values)) != len(values)


def _disjoint(small: array, large: array) -> bool:
    return set(small).isdisjoint(large)


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

_CSV_MODES = frozenset({MergeMode.CSV, MergeMode.CSV_LENIENT})


def _read_plain(text: str, default_merge: MergeMode, prefix_bytes: int) -> _Plain | None:
    """The line's group when it has the plain shape and every rule holds (as ``draft_from_record``,
    ``_finish`` and ``_check_stored_keys`` would find), else None: the full path decides then, so None never
    hides a problem and a group returned is one the full path accepts."""
    match = _LINE.fullmatch(text)
    if match is None:
        return None
    text_id, int_id, first, head, path, others, key, merge_name, on_missing = match.groups()
    group_id = text_id if text_id is not None else str(int(int_id))
    if len(group_id) > MAX_GROUP_ID_BYTES or len(first) > MAX_URL_CHARS:
        return None
    urls, heads = [first], [head]
    if others:
        for other in _OTHER_URL.finditer(others):
            if len(other.group(1)) > MAX_URL_CHARS:
                return None
            urls.append(other.group(1))
            heads.append(other.group(2))
    merge = _MERGES[merge_name] if merge_name is not None else default_merge
    if key is None:  # manifest_groups._default_key, the first URL's path read by the pattern
        if merge in _CSV_MODES:
            key = f"{group_id}.csv"
        elif merge is MergeMode.NONE:
            key = f"{group_id}/"
        else:
            stem, dot, ext = path.rsplit("/", 1)[-1].rpartition(".")
            key = f"{group_id}.{ext}" if stem and dot and _EXTENSION.match(dot + ext) else group_id
    if "/" in key or len(key) > MAX_COMPONENT_BYTES or key in (".", "..") or key.lower() in _RESERVED:
        if not _plain_key_ok(key):
            return None
    stored = len(key)
    if merge is MergeMode.NONE:
        if not key.endswith("/"):
            key += "/"
        stored = len(key) + max([utf8_bytes(name) for name in (DONE_MARKER_NAME, *name_files(urls))])
    if prefix_bytes + stored > S3_MAX_KEY_BYTES or prefix_bytes + _FAILURE_RECORD_MAX_BYTES > S3_MAX_KEY_BYTES:
        return None
    return group_id, urls, heads, key, merge, None if on_missing is None else _ON_MISSING[on_missing]


def _plain_key_ok(key: str) -> bool:
    """``check_key`` for a plain (printable ASCII) key: True only where check_key accepts it."""
    if "/" not in key:
        return len(key) <= MAX_COMPONENT_BYTES and key not in (".", "..") and key.lower() not in _RESERVED
    if len(key) > MAX_KEY_BYTES or key.startswith("/"):
        return False
    segments = key.split("/")
    if segments[-1] == "":
        segments.pop()
    if segments[0].lower() in _RESERVED:
        return False
    return all(segment not in ("", ".", "..") and len(segment) <= MAX_COMPONENT_BYTES for segment in segments)


def _full_group(text: str, where: Where, default_merge: MergeMode, key_prefix: str) -> Group:
    """The line's group by the whole-manifest rules. Raises _Bad on a problem."""
    try:
        draft = draft_from_record(_decode(text, where), where)
        group = _finish(draft, default_merge)
        _check_stored_keys(group, draft, key_prefix)
    except ManifestError:
        raise _Bad from None
    return group


def _jsonl_items(raw_lines: Iterable[bytes], *, source: str, default_merge: MergeMode,
                 key_prefix: str) -> Iterator[_Plain | Group]:
    """Each group of a JSON Lines manifest, plain or full. Raises _Bad on a problem."""
    prefix_bytes = utf8_bytes(key_prefix)
    read_plain = _read_plain
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
        plain = read_plain(stripped, default_merge, prefix_bytes)
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
        columns = _read_header(first[1], first[0], source=source)
        current: tuple[str, list[Source], str | None, Where] | None = None
        for line, cells in rows:
            where = Where(source, line)
            if len(cells) != len(columns):
                raise _Bad
            group_id = read_group_id(cells[columns["group"]], where)
            url = _read_source(cells, columns, where)
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
            group = _finish(draft, default_merge)
            _check_stored_keys(group, draft, key_prefix)
        except ManifestError:
            raise _Bad from None
        yield group


# --- the two passes ----------------------------------------------------------------------------------------


def _items(raw_lines: Iterable[bytes], *, fmt: str, source: str, default_merge: MergeMode,
           key_prefix: str) -> Iterator[_Plain | Group]:
    if fmt == "jsonl":
        return _jsonl_items(raw_lines, source=source, default_merge=default_merge, key_prefix=key_prefix)
    if fmt == "csv":
        return _finished_drafts(_csv_drafts(raw_lines, source=source), default_merge=default_merge,
                                key_prefix=key_prefix)
    raise ValueError(f"not a line format: {fmt!r}")


def _scan(items: Iterable[_Plain | Group], *, key_prefix: str) -> ManifestScan | None:
    tracker = _Tracker(key_prefix=key_prefix)
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


def _stream(items: Iterator[_Plain | Group], *, source: str, expected: int | None) -> Iterator[Group]:
    count = 0
    try:
        for item in items:
            count += 1
            yield _plain_group(item) if type(item) is tuple else item
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

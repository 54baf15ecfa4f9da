"""Rules every manifest format shares: field checks, default keys, unique ids and keys, the job id.

Each reader turns its rows into ``Draft`` groups (remembering where each came from); ``assemble_job``
then applies the cross-group rules once, so JSON Lines, CSV, job specs and events agree exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

from fanfetch.core.bookkeeping import failure_record_key
from fanfetch.core.limits import (
    DONE_MARKER_NAME,
    MAX_GROUP_ID_BYTES,
    RESERVED_JOB_ID_BYTES,
    S3_MAX_KEY_BYTES,
    first_sqs_refused,
    utf8_bytes,
)
from fanfetch.core.manifest_rules import key_identity
from fanfetch.core.manifest_text import excerpt
from fanfetch.core.merge import name_files
from fanfetch.core.models import Group, Job, MergeMode, OnMissing, Source
from fanfetch.core.validate import MAX_KEY_BYTES, check_group_id, check_key, check_url
from fanfetch.errors import ManifestError, ManifestProblems

__all__ = [
    "MAX_URL_CHARS",
    "MAX_PROBLEMS",
    "JOB_ID_VERSION",
    "Draft",
    "Problems",
    "Where",
    "assemble_job",
    "check_stored_keys",
    "derive_job_id",
    "finish_group",
    "read_group_id",
    "read_hex",
    "read_key",
    "read_merge",
    "read_on_missing",
    "read_size",
    "read_url",
]

# Longer request lines are refused by common servers (Apache's LimitRequestLine is 8190 bytes,
# nginx's large_client_header_buffers 8k); refusing them here also keeps error messages short.
MAX_URL_CHARS = 8192
_MAX_EXTENSION_CHARS = 8  # ".csv", ".gz", ".parquet"; longer "extensions" are not extensions
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,7}\Z")
_HEX_DIGITS = {"sha256": 64, "md5": 32}
JOB_ID_VERSION = b"fanfetch-job-v1\n"
_MERGE_MODES = {mode.value: mode for mode in MergeMode}
MAX_PROBLEMS = 20  # a manifest's problems reported at once: enough to see a pattern, short enough to read


class Problems:
    """Collects a manifest's problems so one pass reports up to ``MAX_PROBLEMS`` of them at once.

    Without a collector (``None``) readers raise at the first problem, as before."""

    def __init__(self, limit: int = MAX_PROBLEMS):
        self._limit = limit
        self._found: list[ManifestError] = []

    def __bool__(self) -> bool:
        return bool(self._found)

    def add(self, error: ManifestError) -> None:
        self._found.append(error)
        if len(self._found) >= self._limit:
            raise self.error(truncated=True)

    def error(self, *, truncated: bool = False) -> ManifestError:
        ordered = sorted(self._found, key=lambda e: e.line if e.line is not None else 0)
        if len(ordered) == 1 and not truncated:
            return ordered[0]
        return ManifestProblems(ordered, truncated=truncated)

    def raise_if_any(self) -> None:
        if self._found:
            raise self.error()


def note(problems: Problems | None, error: ManifestError) -> None:
    """Raise ``error`` at once without a collector; else collect it (raising at the limit)."""
    if problems is None:
        raise error
    problems.add(error)


class Where(NamedTuple):
    """A position in the input, for error messages: a file (or event) and a line (or index).
    (Immutable like the frozen dataclasses elsewhere; a NamedTuple because one is built per line.)"""

    source: str
    line: int | None = None

    def error(self, problem: str, field: str | None = None) -> ManifestError:
        return ManifestError(self.source, problem, line=self.line, field=field)

    def describe(self, other: Where) -> str:
        """How to point at ``self`` from an error raised at ``other``."""
        if self.source == other.source:
            return f"line {self.line}" if self.line is not None else "earlier"
        return f"{self.source}:{self.line}" if self.line is not None else self.source


class Draft(NamedTuple):
    """A group as read, before defaults and cross-group checks: ``key``/``merge`` None = not given."""

    group_id: str
    sources: tuple[Source, ...]
    key: str | None
    merge: MergeMode | None
    where: Where
    on_missing: OnMissing | None = None  # not given: the run's default (--on-missing) applies


def _require_text(value: object, where: Where, field: str, what: str) -> str:
    if not isinstance(value, str):
        raise where.error(f"{what} must be a string, not {_kind(value)}", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise where.error(f"{what} contains an unpaired surrogate escape", field) from None
    refused = first_sqs_refused(value)
    if refused is not None:  # SQS refuses the whole message: say so here, not in a worker's dead letter
        raise where.error(f"{what} contains U+{ord(refused):04X}, a character SQS does not accept in a message",
                          field)
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def read_url(value: object, where: Where, field: str = "url") -> str:
    """A checked http(s) URL (see ``validate.check_url``), at most ``MAX_URL_CHARS`` long."""
    url = _require_text(value, where, field, "URL")
    if len(url) > MAX_URL_CHARS:
        raise where.error(f"URL is {len(url):,} characters long, over the {MAX_URL_CHARS:,} limit", field)
    return check_url(url, source=where.source, line=where.line, field=field)


def read_group_id(value: object, where: Where, field: str = "group") -> str:
    """A checked group id; JSON integers become their decimal text."""
    if isinstance(value, float) or isinstance(value, bool):
        raise where.error(f"group id must be a string or an integer, not {_kind(value)}", field)
    if isinstance(value, str):
        _require_text(value, where, field, "group id")
        if utf8_bytes(value) > MAX_GROUP_ID_BYTES:  # checked before check_group_id echoes anything
            raise where.error(f"group id is {utf8_bytes(value):,} bytes in UTF-8, over the {MAX_GROUP_ID_BYTES} "
                              "limit (it names a DynamoDB sort key and an S3 key)", field)
    elif not isinstance(value, int):
        raise where.error(f"group id must be a string or an integer, not {_kind(value)}", field)
    return check_group_id(value, source=where.source, line=where.line, field=field)


def read_key(value: object, where: Where, field: str = "key") -> str:
    """A checked output key (see ``validate.check_key``)."""
    key = _require_text(value, where, field, "key")
    if len(key) > MAX_KEY_BYTES:  # characters >= bytes / 4; cheap first cut before echoing anything
        raise where.error(f"output key is longer than {MAX_KEY_BYTES} bytes", field)
    return check_key(key, source=where.source, line=where.line, field=field)


def read_merge(value: object, where: Where, field: str = "merge") -> MergeMode:
    """The merge mode named ``value``; the error lists the valid names."""
    mode = _MERGE_MODES.get(value) if isinstance(value, str) else None
    if mode is not None:
        return mode
    names = ", ".join(_MERGE_MODES)
    if not isinstance(value, str):
        raise where.error(f"merge mode must be a string (one of: {names}), not {_kind(value)}", field)
    try:
        return MergeMode.parse(value)
    except ValueError:
        raise where.error(f"unknown merge mode {excerpt(value)} (expected one of: {names})", field) from None


def read_on_missing(value: object, where: Where, field: str = "on_missing") -> OnMissing:
    """The missing-file policy named ``value``: "fail" or "skip"."""
    if isinstance(value, str):
        try:
            return OnMissing.parse(value)
        except ValueError:
            pass
    raise where.error(f"must be \"fail\" or \"skip\", got {excerpt(value)}", field)


def read_hex(value: object, where: Where, field: str, algorithm: str) -> str:
    """A lowercase hex digest of the right length for ``algorithm`` (sha256 or md5)."""
    digits = _HEX_DIGITS[algorithm]
    text = _require_text(value, where, field, algorithm)
    if len(text) != digits or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise where.error(f"{algorithm} must be {digits} hex digits, got {excerpt(text)}", field)
    return text.lower()


def read_size(value: object, where: Where, field: str) -> int:
    """A byte count: a non-negative integer (CSV readers pass decimal text through ``int`` first)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise where.error(f"size must be a non-negative integer number of bytes, got {excerpt(value)}", field)
    return value


def _default_key(draft: Draft, merge: MergeMode) -> str:
    if merge.is_csv:
        return f"{draft.group_id}.csv"
    if merge is MergeMode.NONE:
        return f"{draft.group_id}/"
    name = urlsplit(draft.sources[0].url).path.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    suffix = f"{dot}{ext}"
    if stem and len(suffix) <= _MAX_EXTENSION_CHARS and _EXTENSION.match(suffix):
        return f"{draft.group_id}{suffix}"
    return draft.group_id


def finish_group(draft: Draft, default_merge: MergeMode) -> Group:
    merge = draft.merge or default_merge
    if draft.key is None:
        key = _default_key(draft, merge)
        # A derived key can only be wrong because of the group id, so that is the field to fix.
        check_key(key, source=draft.where.source, line=draft.where.line, field="group")
    else:
        key = draft.key
    if merge is MergeMode.NONE and not key.endswith("/"):
        key += "/"  # a folder: the group's files are stored under <key>/<filename>
    return Group(group_id=draft.group_id, sources=draft.sources, key=key, merge=merge, on_missing=draft.on_missing)


def check_stored_keys(group: Group, draft: Draft, key_prefix: str) -> None:
    """Every S3 key the group makes fits S3's 1,024 UTF-8 bytes, the output prefix included: its output (for
    merge mode none: each file and the done marker below it) and its failure record (named by the group id)."""
    prefix_bytes = utf8_bytes(key_prefix)
    key = group.key
    if group.merge is MergeMode.NONE:
        key += max([DONE_MARKER_NAME, *name_files([s.url for s in group.sources])], key=utf8_bytes)
    total = prefix_bytes + utf8_bytes(key)
    with_prefix = f" with the output prefix {excerpt(key_prefix)}" if key_prefix else ""
    if total > S3_MAX_KEY_BYTES:
        raise draft.where.error(f"output key {excerpt(key)} is {total:,} bytes in UTF-8{with_prefix}, over S3's "
                                f"{S3_MAX_KEY_BYTES:,}", "key" if draft.key is not None else "group")
    record = prefix_bytes + utf8_bytes(failure_record_key("j" * RESERVED_JOB_ID_BYTES, group.group_id))
    if record > S3_MAX_KEY_BYTES:
        raise draft.where.error(f"group id is too long for its failure record key (_jobs/<job>/failed/<group id>"
                                f".json{with_prefix} would be {record:,} bytes, over S3's {S3_MAX_KEY_BYTES:,})",
                                "group")


def _check_key_layout(groups: Sequence[Group], drafts: Sequence[Draft]) -> None:
    """No key may be a folder of another key (a file cannot also be a folder on disk), and no key
    may fall inside another group's ``none`` folder (their files could overwrite each other)."""
    files: dict[str, int] = {}  # by key_identity: a case-insensitive filesystem sees one name
    folders: dict[str, int] = {}
    for index, group in enumerate(groups):
        if group.key.endswith("/"):
            folders[key_identity(group.key)] = index
        else:
            files[key_identity(group.key)] = index
    for index, group in enumerate(groups):
        here = drafts[index].where
        field = "key" if drafts[index].key is not None else "group"
        parts = group.key.rstrip("/").split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            other = files.get(key_identity(prefix))
            if other is not None:
                raise here.error(
                    f"output key {excerpt(group.key)} needs {excerpt(prefix)} to be a folder, but that is "
                    f"the output file of group {excerpt(groups[other].group_id)} "
                    f"({drafts[other].where.describe(here)})",
                    field,
                )
            other = folders.get(key_identity(prefix + "/"))
            if other is not None:
                raise here.error(
                    f"output key {excerpt(group.key)} lies inside {excerpt(prefix + '/')}, the output folder "
                    f"of group {excerpt(groups[other].group_id)} ({drafts[other].where.describe(here)})",
                    field,
                )
        if group.key.endswith("/"):
            other = files.get(key_identity(group.key[:-1]))
            if other is not None:
                raise here.error(
                    f"output folder {excerpt(group.key)} has the same name as the output file of group "
                    f"{excerpt(groups[other].group_id)} ({drafts[other].where.describe(here)})",
                    field,
                )


def assemble_job(
    drafts: Sequence[Draft], *, source: str, default_merge: MergeMode, problems: Problems | None = None,
    key_prefix: str = "",
) -> Job:
    """The validated Job: defaults filled in, group ids and output keys unique, a deterministic id, and every
    S3 key a group makes within S3's 1,024 bytes below ``key_prefix`` (the output prefix, when known).

    With ``problems`` (which may already hold the readers' problems) every problem is collected and
    raised together at the end, up to ``MAX_PROBLEMS``."""
    if not drafts:
        if problems:
            problems.raise_if_any()
        raise ManifestError(source, "no groups (the input is empty or has only blank and comment lines)")
    seen_ids: dict[str, Draft] = {}
    seen_keys: dict[str, tuple[Draft, Group]] = {}
    groups: list[Group] = []
    kept: list[Draft] = []
    for draft in drafts:
        first = seen_ids.get(draft.group_id)
        if first is not None:
            note(problems, draft.where.error(
                f"duplicate group id {excerpt(draft.group_id)} "
                f"(first at {first.where.describe(draft.where)})",
                "group",
            ))
            continue
        seen_ids[draft.group_id] = draft
        try:
            group = finish_group(draft, default_merge)
            check_stored_keys(group, draft, key_prefix)
        except ManifestError as exc:
            note(problems, exc)
            continue
        identity = key_identity(group.key)
        taken = seen_keys.get(identity)
        if taken is not None:
            other, other_group = taken
            field = "key" if draft.key is not None else "group"
            owner = f"group {excerpt(other_group.group_id)} ({other.where.describe(draft.where)})"
            if other_group.key == group.key:
                note(problems, draft.where.error(f"output key {excerpt(group.key)} is already the key of {owner}",
                                                 field))
            else:
                note(problems, draft.where.error(
                    f"output key {excerpt(group.key)} names the same file as {excerpt(other_group.key)}, the key of "
                    f"{owner}, on a file system that ignores case or Unicode normalisation (macOS, Windows)", field))
            continue
        seen_keys[identity] = (draft, group)
        groups.append(group)
        kept.append(draft)
    if problems:
        problems.raise_if_any()  # the layout check below needs every key: report what we have first
    _check_key_layout(groups, kept)
    return Job(job_id=derive_job_id(groups), groups=tuple(groups))


def derive_job_id(groups: Sequence[Group]) -> str:
    """First 16 hex digits of a SHA-256 over a canonical encoding of ``groups``: the same manifest
    always yields the same job id, and any change to a group, URL, check, key or mode changes it."""
    records = [
        [
            group.group_id,
            group.key,
            group.merge.value,
            [[s.url, s.sha256, s.md5, s.size] for s in group.sources],
        ]
        for group in groups
    ]
    # One dumps call: the C encoder is ~3x faster on one big list than on 200,000 small ones.
    canonical = json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(JOB_ID_VERSION + canonical).hexdigest()[:16]

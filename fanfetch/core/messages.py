"""The queue message schema (version 1): one JSON message per group.

``{"v": 1, "job": ..., "group": ..., "key": ..., "merge": "csv", "urls": [...], "checks": [...],
"refresh": true}``
``checks`` is present only when the manifest gave a sha256/md5/size for some URL; it lines up with
``urls`` (``null`` where nothing is known). ``on_missing`` ("fail" | "skip", optional) is the
group's own missing-file policy; absent, the worker's default applies (``FANFETCH_ON_MISSING``).
``refresh`` (optional, default false) asks the worker to
check an existing output against the origin instead of skipping it (scheduled incremental runs).
Decoding validates everything again: a message is input from outside the process, and a bad one
is poison (``MessageError``), never retried: bytes that are not UTF-8, unpaired surrogates, and
``checks`` that are not exactly ``sha256``/``md5`` hex digests and an integer ``size`` included.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fanfetch.core.bookkeeping import is_valid_job_id
from fanfetch.core.manifest_groups import Where, read_group_id, read_hex, read_key, read_size, read_url
from fanfetch.core.manifest_text import excerpt
from fanfetch.core.models import Group, MergeMode, OnMissing, Source
from fanfetch.errors import InputError, ManifestError, MessageError

__all__ = [
    "SCHEMA_VERSION",
    "SQS_MAX_MESSAGE_BYTES",
    "JobMessage",
    "encode_message",
    "decode_message",
    "encode_job",
]

SCHEMA_VERSION = 1
# SQS's classic per-message limit. Kept as the ceiling even where a queue allows more, so a job
# that enqueues here enqueues on every queue (and every moto version).
SQS_MAX_MESSAGE_BYTES = 262_144


class JobMessage:
    """A decoded message: which job, and the group to process."""

    __slots__ = ("job_id", "group", "refresh")

    def __init__(self, job_id: str, group: Group, refresh: bool = False):
        self.job_id = job_id
        self.group = group
        self.refresh = refresh

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobMessage) and (self.job_id, self.group, self.refresh) == (
            other.job_id, other.group, other.refresh)

    def __repr__(self) -> str:
        return f"JobMessage(job_id={self.job_id!r}, group={self.group!r}, refresh={self.refresh!r})"


def _check_record(source: Source) -> dict[str, object] | None:
    record = {k: v for k, v in (("sha256", source.sha256), ("md5", source.md5), ("size", source.size)) if v is not None}
    return record or None


def encode_message(job_id: str, group: Group, *, max_bytes: int = SQS_MAX_MESSAGE_BYTES, refresh: bool = False) -> str:
    """The message body for ``group``; raises InputError if it would not fit in one SQS message."""
    body: dict[str, object] = {
        "v": SCHEMA_VERSION,
        "job": job_id,
        "group": group.group_id,
        "key": group.key,
        "merge": group.merge.value,
        "urls": [s.url for s in group.sources],
    }
    checks = [_check_record(s) for s in group.sources]
    if any(checks):
        body["checks"] = checks
    if group.on_missing is not None:
        body["on_missing"] = group.on_missing.value
    if refresh:
        body["refresh"] = True
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InputError(
            f"group {group.group_id!r}: its message would be {size:,} bytes, over the {max_bytes:,}-byte "
            f"SQS limit ({len(group.sources):,} URLs); split it into smaller groups"
        )
    return text


def encode_job(
    job_id: str, groups: Sequence[Group], *, max_bytes: int = SQS_MAX_MESSAGE_BYTES, refresh: bool = False
) -> list[str]:
    """Every group's message, all checked before any is returned (so nothing is sent half-way)."""
    return [encode_message(job_id, g, max_bytes=max_bytes, refresh=refresh) for g in groups]


def _require(body: dict[str, object], name: str, kind: type) -> object:
    if name not in body:
        raise MessageError(f"message has no {name!r} field")
    value = body[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MessageError(f"message field {name!r} must be a {kind.__name__}")
    return value


def _text(text: str | bytes | bytearray) -> str:
    """The body as text that survives UTF-8 (S3 keys, SQS, logs); bytes must be UTF-8."""
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"message is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(text, str):
        raise MessageError(f"message body is not text but {type(text).__name__}")
    _encodable(text, "body")
    return text


def _encodable(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageError(f"message field {field!r} contains an unpaired surrogate") from None


def decode_message(text: str | bytes) -> JobMessage:
    """Parse and validate a message body; raises MessageError (poison) on anything off."""
    try:
        body = json.loads(_text(text))
    except (json.JSONDecodeError, TypeError) as exc:
        raise MessageError(f"message is not JSON: {exc}") from None
    except RecursionError:
        raise MessageError("message is not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise MessageError("message is not a JSON object")
    version = body.get("v")
    if version != SCHEMA_VERSION:
        raise MessageError(f"unknown message schema version {excerpt(version)} (this worker reads v{SCHEMA_VERSION})")
    job_id = str(_require(body, "job", str))
    _encodable(job_id, "job")
    if not is_valid_job_id(job_id):
        raise MessageError(f"message field 'job' is not a job id (letters, digits, '.', '_', '-'; at most 128; "
                           f"no '..'): {excerpt(job_id)}")
    where = Where("message")
    try:
        group_id = read_group_id(_require(body, "group", str), where, "group")
    except ManifestError as exc:
        raise MessageError(f"{exc.field or 'group'}: {exc.problem}") from None
    urls = _require(body, "urls", list)
    assert isinstance(urls, list)
    if not urls or not all(isinstance(u, str) for u in urls):
        raise MessageError(f"group {group_id!r}: message field 'urls' must be a non-empty list of strings")
    try:
        merge = MergeMode.parse(str(_require(body, "merge", str)))
    except ValueError as exc:
        raise MessageError(str(exc)) from None
    checks = body.get("checks")
    if checks is None:
        checks = [None] * len(urls)
    if not isinstance(checks, list) or len(checks) != len(urls):
        raise MessageError(f"group {group_id!r}: message field 'checks' must be a list lining up with 'urls'")
    try:
        key = read_key(_require(body, "key", str), where, "key")
        sources = tuple(
            _decode_source(url, check, Where("message", index)) for index, (url, check) in
            enumerate(zip(urls, checks, strict=True))
        )
    except ManifestError as exc:
        at = "" if exc.line is None else f"[{exc.line}]"
        raise MessageError(f"group {group_id!r}: {exc.field or 'field'}{at}: {exc.problem}") from None
    refresh = body.get("refresh", False)
    if not isinstance(refresh, bool):
        raise MessageError("message field 'refresh' must be true or false")
    on_missing = body.get("on_missing")
    if on_missing is not None:
        try:
            on_missing = OnMissing.parse(on_missing if isinstance(on_missing, str) else repr(on_missing))
        except ValueError as exc:
            raise MessageError(f"group {group_id!r}: message field 'on_missing': {exc}") from None
    group = Group(group_id=group_id, sources=sources, key=key, merge=merge, on_missing=on_missing)
    return JobMessage(job_id, group, refresh=refresh)


_CHECK_FIELDS = ("sha256", "md5", "size")


def _decode_source(url: str, check: object, where: Where) -> Source:
    """One URL and its integrity facts, each checked as strictly as in a manifest (never dropped)."""
    url = read_url(url, where, "urls")
    if check is None:
        return Source(url=url)
    if not isinstance(check, dict):
        raise where.error("entries must be objects or null", "checks")
    unknown = sorted(set(check) - set(_CHECK_FIELDS))
    if unknown:
        raise where.error(f"unknown field {excerpt(unknown[0])} (expected {', '.join(_CHECK_FIELDS)})", "checks")
    sha256, md5, size = (check.get(name) for name in _CHECK_FIELDS)
    return Source(
        url=url,
        sha256=None if sha256 is None else read_hex(sha256, where, "checks.sha256", "sha256"),
        md5=None if md5 is None else read_hex(md5, where, "checks.md5", "md5"),
        size=None if size is None else read_size(size, where, "checks.size"),
    )

"""The queue message schema (version 1): one JSON message per group.

``{"v": 1, "job": ..., "group": ..., "key": ..., "merge": "csv", "urls": [...], "checks": [...],
"refresh": true}``
``checks`` is present only when the manifest gave a sha256/md5/size for some URL; it lines up with
``urls`` (``null`` where nothing is known). ``refresh`` (optional, default false) asks the worker to
check an existing output against the origin instead of skipping it (scheduled incremental runs).
Decoding validates everything again: a message is input from outside the process, and a bad one
is poison (``MessageError``), never retried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fanfetch.core.models import Group, MergeMode, Source
from fanfetch.core.validate import check_key, check_url
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
    record = {k: v for k, v in (("sha256", source.sha256), ("md5", source.md5), ("size", source.size)) if v}
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


def decode_message(text: str) -> JobMessage:
    """Parse and validate a message body; raises MessageError (poison) on anything off."""
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise MessageError(f"message is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MessageError("message is not a JSON object")
    version = body.get("v")
    if version != SCHEMA_VERSION:
        raise MessageError(f"unknown message schema version {version!r} (this worker reads v{SCHEMA_VERSION})")
    job_id = str(_require(body, "job", str))
    group_id = str(_require(body, "group", str))
    key = str(_require(body, "key", str))
    urls = _require(body, "urls", list)
    assert isinstance(urls, list)
    if not urls or not all(isinstance(u, str) for u in urls):
        raise MessageError("message field 'urls' must be a non-empty list of strings")
    try:
        merge = MergeMode.parse(str(_require(body, "merge", str)))
    except ValueError as exc:
        raise MessageError(str(exc)) from None
    checks = body.get("checks") or [None] * len(urls)
    if not isinstance(checks, list) or len(checks) != len(urls):
        raise MessageError("message field 'checks' must line up with 'urls'")
    try:
        check_key(key, source="message", field="key")
        sources = tuple(_decode_source(url, check) for url, check in zip(urls, checks, strict=True))
    except ManifestError as exc:
        raise MessageError(f"group {group_id!r}: {exc.field or 'field'}: {exc.problem}") from None
    refresh = body.get("refresh", False)
    if not isinstance(refresh, bool):
        raise MessageError("message field 'refresh' must be true or false")
    return JobMessage(job_id, Group(group_id=group_id, sources=sources, key=key, merge=merge), refresh=refresh)


def _decode_source(url: str, check: object) -> Source:
    check_url(url, source="message", field="urls")
    if check is None:
        return Source(url=url)
    if not isinstance(check, dict):
        raise MessageError("message field 'checks' entries must be objects or null")
    size = check.get("size")
    return Source(
        url=url,
        sha256=check.get("sha256"),
        md5=check.get("md5"),
        size=int(size) if isinstance(size, int) else None,
    )

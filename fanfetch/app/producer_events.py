"""Turns a producer Lambda event into a validated Job.

Accepted events (exactly one source; ``merge`` optional, default ``concat``; ``refresh`` optional)::

    {"manifest": "s3://bucket/jobs/stations.toml"}   # or a key in BUCKET_NAME: {"manifest": "jobs/x.jsonl"}
    {"groups": [{"group": "50430", "urls": ["https://…"], "key": "…", "merge": "csv"}, …]}
    {"spec": {"job": {…}, "table": {"rows": […]}, "expand": {…}}}   # table paths resolve in BUCKET_NAME

``"refresh": true`` (the stack's schedule sends it) makes a new run of the same manifest: the job id
gets the run's UTC time appended, and workers re-check existing outputs against the origin,
rewriting only the groups whose content changed. The schedule also sends ``"scheduled_at"`` (the
EventBridge event's ``time``, e.g. ``"2026-12-03T08:00:00Z"``): the run's time is then that, not the
clock's, so Lambda's retries and EventBridge's duplicate deliveries of one event are one job.
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fanfetch.core.manifest import parse_groups, parse_spec
from fanfetch.core.models import Job, MergeMode
from fanfetch.errors import InputError
from fanfetch.ports import ManifestReader

__all__ = ["job_from_event", "ProducerRequest", "request_from_event", "producer_max_urls"]

# Measured (bench: a 200,000-URL spec parsed and encoded took 140 MiB, 0.7 KiB a URL): 1,000 URLs per MiB above
# a 128 MiB base leaves the producer room; 512 MiB (the stack's default) takes 384,000 URLs.
_URLS_PER_MIB = 1000
_BASE_MIB = 128


def producer_max_urls(memory_mb: str | None) -> int | None:
    """The largest spec expansion a producer of ``memory_mb`` (Lambda's AWS_LAMBDA_FUNCTION_MEMORY_SIZE) can
    hold; None (the library's own limit) when it is not running in Lambda."""
    try:
        memory = int(memory_mb or "")
    except ValueError:
        return None
    return max(memory - _BASE_MIB, 1) * _URLS_PER_MIB

_SOURCES = ("manifest", "groups", "spec")
_KNOWN = frozenset(_SOURCES + ("merge", "refresh", "scheduled_at"))


@dataclass(frozen=True)
class ProducerRequest:
    """What the producer was asked to do: enqueue ``job``, as a refresh run or not."""

    job: Job
    refresh: bool = False


def request_from_event(
    event: Mapping[str, Any], *, manifests: ManifestReader, bucket: str, now: Callable[[], float] = time.time,
    key_prefix: str = "",
    max_spec_urls: int | None = None,
) -> ProducerRequest:
    """The job and run mode an event asks for (see the module docstring); ``key_prefix`` is the output prefix
    (every S3 key a group makes must fit S3's limit with it)."""
    job = job_from_event(event, manifests=manifests, bucket=bucket, key_prefix=key_prefix,
                         max_spec_urls=max_spec_urls)
    refresh = event.get("refresh", False)
    if not isinstance(refresh, bool):
        raise InputError("event: refresh must be true or false")
    scheduled_at = _scheduled_at(event)
    if refresh:
        run_at = scheduled_at if scheduled_at is not None else now()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(run_at))
        job = dataclasses.replace(job, job_id=f"{job.job_id}-{stamp}")
    return ProducerRequest(job=job, refresh=refresh)


def _scheduled_at(event: Mapping[str, Any]) -> float | None:
    """The schedule event's time as epoch seconds, or None when the event has none."""
    raw = event.get("scheduled_at")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(f"event: scheduled_at must be a UTC time like 2026-12-03T08:00:00Z, got {raw!r}")
    return moment.astimezone(UTC).timestamp()


def job_from_event(event: Mapping[str, Any], *, manifests: ManifestReader, bucket: str, key_prefix: str = "",
                   max_spec_urls: int | None = None) -> Job:
    """Validate ``event`` and the manifest it names; raise InputError / ManifestError naming the problem."""
    if not isinstance(event, Mapping):
        raise InputError("event must be a JSON object")
    unknown = sorted(set(event) - _KNOWN)
    if unknown:
        raise InputError(f"event: unknown field(s) {', '.join(unknown)} (expected one of {', '.join(_SOURCES)}, "
                         "and optionally merge, refresh, scheduled_at)")
    given = [name for name in _SOURCES if name in event]
    if len(given) != 1:
        raise InputError(f"event must have exactly one of {', '.join(_SOURCES)} (got {', '.join(given) or 'none'})")
    try:
        merge = MergeMode.parse(str(event.get("merge", MergeMode.CONCAT.value)))
    except ValueError as exc:
        raise InputError(f"event: merge: {exc}") from None
    source = given[0]
    if source == "manifest":
        location = str(event["manifest"])
        if not location.startswith("s3://"):
            if not bucket:
                raise InputError("event: manifest is not an s3:// URI and BUCKET_NAME is not set")
            location = f"s3://{bucket}/{location.lstrip('/')}"
        return manifests.load_job(location, default_merge=merge, key_prefix=key_prefix, max_spec_urls=max_spec_urls)
    if source == "groups":
        groups = event["groups"]
        if not isinstance(groups, list):
            raise InputError("event: groups must be a list of group objects")
        return parse_groups(groups, source="event.groups", default_merge=merge, key_prefix=key_prefix)
    spec = event["spec"]
    if not isinstance(spec, Mapping):
        raise InputError("event: spec must be an object")

    def read_related(relative: str) -> bytes:
        if not bucket:
            raise InputError("event: spec names a table file but BUCKET_NAME is not set")
        return manifests.read_bytes(f"s3://{bucket}/{posixpath.normpath(relative.lstrip('/'))}")

    return parse_spec(spec, source="event.spec", read_related=read_related, default_merge=merge,
                      key_prefix=key_prefix, max_urls=max_spec_urls)

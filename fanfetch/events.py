"""Turns a producer Lambda event into a validated Job.

Accepted events (exactly one source; ``merge`` optional, default ``concat``)::

    {"manifest": "s3://bucket/jobs/stations.toml"}   # or a key in BUCKET_NAME: {"manifest": "jobs/x.jsonl"}
    {"groups": [{"group": "50430", "urls": ["https://…"], "key": "…", "merge": "csv"}, …]}
    {"spec": {"job": {…}, "table": {"rows": […]}, "expand": {…}}}   # table paths resolve in BUCKET_NAME
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from fanfetch.adapters.manifests import load_job
from fanfetch.adapters.s3 import read_s3_bytes
from fanfetch.core.manifest import parse_groups, parse_spec
from fanfetch.core.models import Job, MergeMode
from fanfetch.errors import InputError

__all__ = ["job_from_event"]

_SOURCES = ("manifest", "groups", "spec")
_KNOWN = frozenset(_SOURCES + ("merge",))


def job_from_event(event: Mapping[str, Any], *, s3_client: Callable[[], Any], bucket: str) -> Job:
    """Validate ``event`` and the manifest it names; raise InputError / ManifestError naming the problem."""
    if not isinstance(event, Mapping):
        raise InputError("event must be a JSON object")
    unknown = sorted(set(event) - _KNOWN)
    if unknown:
        raise InputError(f"event: unknown field(s) {', '.join(unknown)} (expected one of {', '.join(_SOURCES)}, "
                         "and optionally merge)")
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
        return load_job(location, default_merge=merge, s3_client=s3_client)
    if source == "groups":
        groups = event["groups"]
        if not isinstance(groups, list):
            raise InputError("event: groups must be a list of group objects")
        return parse_groups(groups, source="event.groups", default_merge=merge)
    spec = event["spec"]
    if not isinstance(spec, Mapping):
        raise InputError("event: spec must be an object")

    def read_related(relative: str) -> bytes:
        if not bucket:
            raise InputError("event: spec names a table file but BUCKET_NAME is not set")
        return read_s3_bytes(s3_client(), f"s3://{bucket}/{posixpath.normpath(relative.lstrip('/'))}")

    return parse_spec(spec, source="event.spec", read_related=read_related, default_merge=merge)

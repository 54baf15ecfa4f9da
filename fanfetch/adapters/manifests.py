"""Reads a manifest from where the user keeps it (a local path or ``s3://``) into a validated Job."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from fanfetch.adapters.local_files import load_manifest
from fanfetch.core.manifest import parse_manifest
from fanfetch.core.models import Job, MergeMode

__all__ = ["load_job"]


def load_job(location: str, *, default_merge: MergeMode, s3_client: Callable[[], Any] | None = None,
             key_prefix: str = "", max_spec_urls: int | None = None) -> Job:
    """Parse and validate the manifest at ``location``; files a job spec names are read beside it.
    ``key_prefix``: the output prefix, when known, for the S3 key length checks.

    ``s3_client`` builds a client only when the location is in S3. Raises ManifestError.
    """
    if not location.startswith("s3://"):
        return load_manifest(location, default_merge=default_merge, key_prefix=key_prefix)
    if s3_client is None:
        raise ValueError("an s3:// manifest needs an s3_client factory")
    from fanfetch.adapters.s3 import parse_s3_uri, read_s3_bytes  # boto3 only when a manifest is in S3
    client = s3_client()
    bucket, key = parse_s3_uri(location)
    folder = posixpath.dirname(key)

    def read_related(relative: str) -> bytes:
        return read_s3_bytes(client, f"s3://{bucket}/{posixpath.normpath(posixpath.join(folder, relative))}")

    return parse_manifest(read_s3_bytes(client, location), source=location, default_merge=default_merge,
                          read_related=read_related, key_prefix=key_prefix, max_spec_urls=max_spec_urls)

"""Reads a manifest from where the user keeps it (a local path, ``-`` for stdin, or ``s3://``) into a validated
Job, or (``load_streamed_job``, the local runner's way) checks it whole and reads its groups again when run."""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from fanfetch.adapters.local_files import ManifestFile, load_manifest
from fanfetch.core.locations import parse_s3_uri
from fanfetch.core.manifest import detect_format, parse_manifest
from fanfetch.core.manifest_stream import StreamedJob, scan_drafts, scan_lines, stream_drafts, stream_lines
from fanfetch.core.models import Group, Job, MergeMode
from fanfetch.core.spec import spec_drafts
from fanfetch.errors import ManifestError

__all__ = ["load_job", "load_streamed_job", "S3Manifests"]

_DETECT_BYTES = 65536  # what detect_format looks at


def load_job(location: str, *, default_merge: MergeMode, s3_client: Callable[[], Any] | None = None,
             key_prefix: str = "", max_spec_urls: int | None = None) -> Job:
    """Parse and validate the manifest at ``location``; files a job spec names are read beside it.
    ``key_prefix``: the output prefix, when known, for the S3 key length checks.

    ``s3_client`` builds a client only when the location is in S3. Raises ManifestError.
    """
    if not location.startswith("s3://"):
        return load_manifest(location, default_merge=default_merge, key_prefix=key_prefix)
    data, read_related = _read_s3_manifest(location, s3_client)
    return parse_manifest(data, source=location, default_merge=default_merge, read_related=read_related,
                          key_prefix=key_prefix, max_spec_urls=max_spec_urls)


def _read_s3_manifest(location: str, s3_client: Callable[[], Any] | None) -> tuple[bytes, Callable[[str], bytes]]:
    """The manifest at an ``s3://`` location, and a reader of the files it names beside it (a spec's table)."""
    if s3_client is None:
        raise ValueError("an s3:// manifest needs an s3_client factory")
    from fanfetch.adapters.s3 import read_s3_bytes  # boto3 only when a manifest is in S3
    client = s3_client()
    bucket, key = parse_s3_uri(location)
    folder = posixpath.dirname(key)

    def read_related(relative: str) -> bytes:
        return read_s3_bytes(client, f"s3://{bucket}/{posixpath.normpath(posixpath.join(folder, relative))}")

    return read_s3_bytes(client, location), read_related


def load_streamed_job(location: str, *, default_merge: MergeMode, s3_client: Callable[[], Any] | None = None,
                      key_prefix: str = "", max_spec_urls: int | None = None) -> StreamedJob:
    """Check the whole manifest at ``location`` as ``load_job`` does (pass 1), holding hashes of its ids and keys
    instead of its groups; the job reads the groups again, one at a time, when iterated (pass 2). ``-`` is stdin
    (kept in a temp file meanwhile). A problem is worded by the whole-manifest parser, so the error is exactly
    ``load_job``'s (ManifestError); so is a CSV whose rows of one group are not adjacent held whole, as before."""
    if location.startswith("s3://"):
        data, read_related = _read_s3_manifest(location, s3_client)  # held as bytes: a fraction of its groups
        return _stream_job(lambda: io.BytesIO(data), source=location, read_related=read_related,
                           default_merge=default_merge, key_prefix=key_prefix, max_spec_urls=max_spec_urls)
    manifest = ManifestFile(location)
    return _stream_job(manifest.open, source=manifest.source, read_related=manifest.read_related,
                       default_merge=default_merge, key_prefix=key_prefix, max_spec_urls=max_spec_urls)


def _stream_job(open_bytes: Callable[[], BinaryIO], *, source: str, read_related: Callable[[str], bytes],
                default_merge: MergeMode, key_prefix: str, max_spec_urls: int | None) -> StreamedJob:
    with open_bytes() as handle:
        fmt = detect_format(handle.read(_DETECT_BYTES), source=source)

    def read_all() -> bytes:
        with open_bytes() as handle:
            return handle.read()

    def whole() -> StreamedJob:  # raises the exact error; returns the job when the scan's doubt was unfounded
        return StreamedJob.from_job(parse_manifest(read_all(), source=source, default_merge=default_merge,
                                                   read_related=read_related, fmt=fmt, key_prefix=key_prefix,
                                                   max_spec_urls=max_spec_urls))

    if fmt == "spec":
        spec = read_all()
        try:
            drafts = spec_drafts(spec, source=source, read_related=read_related, max_urls=max_spec_urls)
        except ManifestError:
            return whole()
        scan = scan_drafts(drafts, default_merge=default_merge, key_prefix=key_prefix)
        if scan is None:
            return whole()
        count = scan.groups
        return StreamedJob(job_id=scan.job_id, group_count=scan.groups, file_count=scan.files, hosts=scan.hosts,
                           read_groups=lambda: stream_drafts(drafts, source=source, default_merge=default_merge,
                                                             key_prefix=key_prefix, expected=count))
    with open_bytes() as handle:
        scan = scan_lines(handle, fmt=fmt, source=source, default_merge=default_merge, key_prefix=key_prefix)
    if scan is None:
        return whole()
    count = scan.groups

    def read_groups() -> Iterator[Group]:
        with open_bytes() as handle:
            yield from stream_lines(handle, fmt=fmt, source=source, default_merge=default_merge,
                                    key_prefix=key_prefix, expected=count)

    return StreamedJob(job_id=scan.job_id, group_count=scan.groups, file_count=scan.files, hosts=scan.hosts,
                       read_groups=read_groups)


class S3Manifests:
    """The producer's ``ManifestReader``: manifests and the tables they name, read from S3 (``s3://`` URIs)."""

    def __init__(self, s3_client: Callable[[], Any]):
        self._s3_client = s3_client

    def load_job(self, location: str, *, default_merge: MergeMode, key_prefix: str,
                 max_spec_urls: int | None) -> Job:
        return load_job(location, default_merge=default_merge, s3_client=self._s3_client, key_prefix=key_prefix,
                        max_spec_urls=max_spec_urls)

    def read_bytes(self, location: str) -> bytes:
        from fanfetch.adapters.s3 import read_s3_bytes  # boto3 only when a manifest is in S3

        return read_s3_bytes(self._s3_client(), location)

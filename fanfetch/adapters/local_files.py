"""Local files as manifest sources: read a manifest (and the files a job spec names) from disk.

OS errors become ``ManifestError`` naming the path, so a typo in a path is an input error (exit 2).
"""

from __future__ import annotations

import os

from fanfetch.core.manifest import parse_manifest
from fanfetch.core.models import Job, MergeMode
from fanfetch.errors import ManifestError

__all__ = ["load_manifest"]


def _read_bytes(path: str, *, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ManifestError(path, f"cannot read {what}: {reason}") from None


def load_manifest(path: str, *, default_merge: MergeMode = MergeMode.CONCAT, key_prefix: str = "") -> Job:
    """Parse and validate the manifest at ``path``; a job spec's table path is resolved relative to
    the spec's folder. Raises ManifestError when the file (or its table) cannot be read or is invalid."""
    data = _read_bytes(path, what="manifest")
    folder = os.path.dirname(os.path.abspath(path))

    def read_related(relative: str) -> bytes:
        return _read_bytes(os.path.join(folder, relative), what="file")

    return parse_manifest(data, source=path, default_merge=default_merge, read_related=read_related,
                          key_prefix=key_prefix)

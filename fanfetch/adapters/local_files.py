"""Local files as manifest sources: read a manifest (and the files a job spec names) from disk.

OS errors become ``ManifestError`` naming the path, so a typo in a path is an input error (exit 2).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from typing import IO, BinaryIO

from fanfetch.core.manifest import parse_manifest
from fanfetch.core.models import Job, MergeMode
from fanfetch.errors import ManifestError

__all__ = ["load_manifest", "ManifestFile"]

# Big reads: each read lets the GIL go, and a thread reading the manifest between busy download threads waits
# up to a switch interval (5 ms) to get it back; at 8 KiB a read that cost ~5 s per 100,000 groups.
_READ_BUFFER = 1 << 20


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


class ManifestFile:
    """A local manifest read more than once (check, then run): a regular file is opened again each time and
    must not have changed in between (device, inode, size, modification time); stdin (``-``), a pipe or a
    device is first copied to an unnamed temp file, since it can be read only once."""

    def __init__(self, path: str, *, stdin: BinaryIO | None = None):
        self.source = "stdin" if path == "-" else path
        self._path = path
        self._spool: IO[bytes] | None = None
        self._identity: tuple[int, ...] | None = None
        if path == "-":
            self._spool = _spool(stdin if stdin is not None else sys.stdin.buffer, what="stdin")
            return
        try:
            with open(path, "rb") as handle:
                status = os.fstat(handle.fileno())
                if stat.S_ISREG(status.st_mode):
                    self._identity = _identity(status)
                else:
                    self._spool = _spool(handle, what=path)
        except OSError as exc:
            raise ManifestError(path, f"cannot read manifest: {exc.strerror or exc.__class__.__name__}") from None

    def open(self) -> BinaryIO:
        """The manifest from its start (the caller closes it). Raises ManifestError if the file changed."""
        if self._spool is not None:
            return open(self._spool.name, "rb", buffering=_READ_BUFFER)
        try:
            handle = open(self._path, "rb", buffering=_READ_BUFFER)
        except OSError as exc:
            raise ManifestError(self._path, f"cannot read manifest: {exc.strerror or exc.__class__.__name__}") \
                from None
        if _identity(os.fstat(handle.fileno())) != self._identity:
            handle.close()
            raise ManifestError(self._path, "the manifest changed after it was checked; run again")
        return handle

    def read_all(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    def read_related(self, relative: str) -> bytes:
        """A file a job spec names, relative to the spec's folder (the working directory for stdin)."""
        folder = os.path.dirname(os.path.abspath(self._path)) if self._path != "-" else os.getcwd()
        return _read_bytes(os.path.join(folder, relative), what="file")


def _identity(status: os.stat_result) -> tuple[int, ...]:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _spool(handle: BinaryIO, *, what: str) -> IO[bytes]:
    spool = tempfile.NamedTemporaryFile(prefix="fanfetch-manifest-")  # removed when closed or collected
    try:
        shutil.copyfileobj(handle, spool, 1024 * 1024)
        spool.flush()
    except OSError as exc:
        spool.close()
        raise ManifestError(what, f"cannot read manifest: {exc.strerror or exc.__class__.__name__}") from None
    return spool

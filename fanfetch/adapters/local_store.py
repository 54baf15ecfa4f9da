"""A local folder as an ``ObjectStore``: atomic writes (temp file + fsync + rename), hashes on read.

Temp files live in ``<root>/.fanfetch-tmp/``, so a partial output is never visible under its key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from fanfetch.errors import OutputExists, PermanentStoreError, RetryableStoreError
from fanfetch.ports import StoredObject

__all__ = ["LocalStore", "TMP_DIR_NAME"]

TMP_DIR_NAME = ".fanfetch-tmp"
_HASH_CHUNK_BYTES = 1 << 20


class LocalStore:
    """Implements ``fanfetch.ports.ObjectStore`` on a directory."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.tmp_dir = os.path.join(self.root, TMP_DIR_NAME)

    def _path(self, key: str) -> str:
        path = os.path.abspath(os.path.join(self.root, key))
        if os.path.commonpath([path, self.root]) != self.root or path == self.root:
            raise PermanentStoreError(f"key {key!r} points outside {self.root}")
        return path

    def ensure_tmp_dir(self) -> str:
        """Create (if needed) and return the folder where temp files for this store live."""
        try:
            os.makedirs(self.tmp_dir, exist_ok=True)
        except OSError as exc:
            raise PermanentStoreError(f"cannot create {self.tmp_dir}: {exc.strerror}") from exc
        return self.tmp_dir

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not os.path.isfile(path):
            return None
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def put_file(self, key: str, path: str, *, sha256: str, overwrite: bool = False) -> StoredObject:
        """Store ``path`` at ``key``; unless ``overwrite``, only if nothing is there yet (else OutputExists)."""
        return self._store(key, path, sha256=sha256, overwrite=overwrite)

    def _store(self, key: str, path: str, *, sha256: str, overwrite: bool) -> StoredObject:
        final = self._path(key)
        tmp = None
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = self._temp_copy(path)
            size = os.path.getsize(tmp)
            if overwrite:
                os.replace(tmp, final)
            else:
                os.link(tmp, final)  # atomic create-if-absent: fails if another writer got there first
                os.unlink(tmp)
        except FileExistsError as exc:
            if os.path.isdir(final):
                raise PermanentStoreError(f"cannot store {key!r}: a folder of that name exists") from exc
            raise OutputExists(f"{key!r} is already stored") from exc
        except IsADirectoryError as exc:
            raise PermanentStoreError(f"cannot store {key!r}: a folder of that name exists") from exc
        except NotADirectoryError as exc:
            raise PermanentStoreError(f"cannot store {key!r}: a file stands where a folder is needed") from exc
        except PermissionError as exc:
            raise PermanentStoreError(f"cannot store {key!r}: permission denied") from exc
        except OSError as exc:
            raise RetryableStoreError(f"cannot store {key!r}: {exc.strerror or exc}") from exc
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        return StoredObject(key=key, size=size, sha256=sha256)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        tmp_dir = self.ensure_tmp_dir()
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix="put-", dir=tmp_dir)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._store(key, tmp, sha256=hashlib.sha256(data).hexdigest(), overwrite=True)
        except OSError as exc:  # a full disk above all: a store error, never a raw OSError out of a run
            raise RetryableStoreError(f"cannot store {key!r}: {exc.strerror or exc}") from exc
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    def _temp_copy(self, path: str) -> str:
        """A durable file holding ``path``'s bytes inside the store's temp folder, ready to rename.

        A file already spooled under the temp folder is moved, not copied (the caller is done with it).
        """
        tmp_dir = self.ensure_tmp_dir()
        if os.path.abspath(path).startswith(tmp_dir + os.sep):
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            return path
        fd, tmp = tempfile.mkstemp(prefix="out-", dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, _HASH_CHUNK_BYTES)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

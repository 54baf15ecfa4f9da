"""A local folder as an ``ObjectStore``: atomic writes (temp file + fsync + rename), a sidecar per output
recording its sha256 and fingerprint, and no symbolic link below the folder ever followed.

Temp files live in ``<root>/.fanfetch-tmp/``, so a partial output is never visible under its key.
Sidecars live in ``<root>/_jobs/_outputs/``; one counts only while the output is the very file it describes.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence

from fanfetch.errors import OutputExists, PermanentStoreError, RetryableStoreError
from fanfetch.ports import StoredObject

__all__ = ["LocalStore", "TMP_DIR_NAME", "SIDECAR_DIR"]

TMP_DIR_NAME = ".fanfetch-tmp"
SIDECAR_DIR = ("_jobs", "_outputs")
_HASH_CHUNK_BYTES = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _current_umask() -> int:
    """The process umask, read without changing it where Linux offers that (other threads may be creating
    files); else set and restored at once (a store is built before its worker threads start)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _identity(st: os.stat_result) -> str:
    """What changes whenever another file takes the name or the file is written: inode, size, times."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class LocalStore:
    """Implements ``fanfetch.ports.ObjectStore`` on a directory.

    Every component below the root is opened with ``O_NOFOLLOW`` relative to its parent's descriptor: a
    symbolic link planted in the folder is never followed, neither to decide "already stored" nor to
    write. The root itself is the user's choice and may be a link. Outputs get the umask's mode (0644
    under 022); only temp files are private.
    """

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.tmp_dir = os.path.join(self.root, TMP_DIR_NAME)
        self._file_mode = 0o666 & ~_current_umask()

    # -- paths -------------------------------------------------------------------------------------------

    def _parts(self, key: str) -> list[str]:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts) or "\0" in key:
            raise PermanentStoreError(f"key {key!r} points outside {self.root}")
        return parts

    def _open_root(self) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            try:
                return os.open(self.root, flags)
            except FileNotFoundError:  # created on first use (one open per call otherwise: this runs ~5× a group)
                os.makedirs(self.root, exist_ok=True)
                return os.open(self.root, flags)
        except OSError as exc:
            raise PermanentStoreError(f"cannot open {self.root}: {exc.strerror}") from exc

    def _open_dir(self, parts: Sequence[str], *, create: bool, what: str) -> int:
        """A descriptor of ``root/parts…``, no component followed if it is a link. Raises FileNotFoundError
        when a component is missing and not ``create``; PermanentStoreError when one is not a folder."""
        fd = self._open_root()
        try:
            for depth, name in enumerate(parts):
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._not_a_folder(fd, name, "/".join(parts[: depth + 1]), what) from exc
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _not_a_folder(parent: int, name: str, path: str, what: str) -> PermanentStoreError:
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            return PermanentStoreError(f"{what}: {path!r} is a symbolic link; fanfetch never follows links below "
                                       f"the destination folder (remove it or choose another key)")
        return PermanentStoreError(f"{what}: a file stands where the folder {path!r} is needed")

    def ensure_tmp_dir(self) -> str:
        """Create (if needed) and return the folder where temp files for this store live."""
        try:
            os.close(self._open_dir([TMP_DIR_NAME], create=True, what="temp folder"))
        except OSError as exc:
            raise PermanentStoreError(f"cannot create {self.tmp_dir}: {exc.strerror}") from exc
        return self.tmp_dir

    # -- reading -----------------------------------------------------------------------------------------

    def head(self, key: str) -> StoredObject | None:
        """The object at ``key`` (never through a link). Its sha256 and fingerprint come from the sidecar,
        and only while the file is the one the sidecar describes; a file fanfetch did not write (or a link,
        or a file changed since) is reported with ``sha256=None, fingerprint=None``."""
        parts = self._parts(key)
        try:
            parent = self._open_dir(parts[:-1], create=False, what=f"cannot read {key!r}")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RetryableStoreError(f"cannot read {key!r}: {exc.strerror or exc}") from exc
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RetryableStoreError(f"cannot read {key!r}: {exc.strerror or exc}") from exc
        finally:
            os.close(parent)
        if stat.S_ISDIR(st.st_mode):
            return None  # a folder: nothing stored (a write there fails with a reason)
        version = _identity(st)
        foreign = StoredObject(key=key, size=st.st_size, sha256=None, fingerprint=None, version=version)
        if not stat.S_ISREG(st.st_mode):
            return foreign
        record = self._read_sidecar(key)
        if record is None or record.get("key") != key or record.get("file") != version:
            return foreign
        return StoredObject(key=key, size=st.st_size, sha256=record.get("sha256"),
                            fingerprint=record.get("fingerprint"), version=version)

    @staticmethod
    def _sidecar_name(key: str) -> tuple[list[str], str]:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return [*SIDECAR_DIR, digest[:2]], f"{digest}.json"

    def _read_sidecar(self, key: str) -> dict[str, object] | None:
        folder, name = self._sidecar_name(key)
        try:
            fd = self._open_dir(folder, create=False, what="sidecar")
        except (OSError, PermanentStoreError):
            return None
        try:
            handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            with os.fdopen(handle, "rb") as sidecar:
                record = json.loads(sidecar.read(1 << 16))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        return record if isinstance(record, dict) else None

    def _write_small(self, dir_fd: int, name: str, data: bytes, *, durable: bool) -> None:
        tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         self._file_mode, dir_fd=dir_fd)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise

    # -- writing -----------------------------------------------------------------------------------------

    def put_file(self, key: str, path: str, *, sha256: str, overwrite: bool = False, fingerprint: str | None = None,
                 replaces: str | None = None) -> StoredObject:
        """Store ``path`` at ``key``. Default: only if nothing is there yet (else OutputExists). ``overwrite``:
        unconditionally. ``replaces``: only if the object there is still that ``version`` (else OutputExists)."""
        return self._store(key, path, sha256=sha256, overwrite=overwrite, fingerprint=fingerprint,
                           replaces=replaces, sidecar=True)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream",
                  fingerprint: str | None = None) -> None:
        """Store a small object, replacing what is there (a sidecar is kept when ``fingerprint`` is given)."""
        tmp_dir = self.ensure_tmp_dir()
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix="put-", dir=tmp_dir)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._store(key, tmp, sha256=hashlib.sha256(data).hexdigest(), overwrite=True, fingerprint=fingerprint,
                        replaces=None, sidecar=fingerprint is not None)
        except OSError as exc:  # a full disk above all: a store error, never a raw OSError out of a run
            raise RetryableStoreError(f"cannot store {key!r}: {exc.strerror or exc}") from exc
        finally:
            if tmp is not None and os.path.lexists(tmp):
                os.unlink(tmp)

    def _store(self, key: str, path: str, *, sha256: str, overwrite: bool, fingerprint: str | None,
               replaces: str | None, sidecar: bool) -> StoredObject:
        parts = self._parts(key)
        what = f"cannot store {key!r}"
        tmp = None
        try:
            tmp = self._temp_copy(path)
            if tmp == path:
                tmp = None  # the caller's spooled file: moved on success, left to the caller on failure
            placing = tmp or path
            os.chmod(placing, self._file_mode)  # temp files are private; the output follows the umask
            tmp_fd = self._open_dir([TMP_DIR_NAME], create=True, what="temp folder")
            tmp_name = os.path.basename(placing)
            folder, sidecar_name = self._sidecar_name(key)
            shard = self._open_dir(folder, create=True, what="bookkeeping folder")
            try:
                # One writer of a key at a time (threads and processes): the output and its sidecar are placed
                # as one step for any other writer, so a duplicate delivery sees both or neither.
                fcntl.flock(shard, fcntl.LOCK_EX)
                parent = self._open_dir(parts[:-1], create=True, what=what)
                try:
                    st = self._place(tmp_fd, tmp_name, parent, parts[-1], key, overwrite=overwrite,
                                     replaces=replaces)
                    tmp = None
                    if sidecar:  # after the output: a crash in between leaves an output without one (fetched again)
                        record = {"key": key, "sha256": sha256, "size": st.st_size, "fingerprint": fingerprint,
                                  "file": _identity(st)}
                        try:
                            self._write_small(shard, sidecar_name, json.dumps(record, ensure_ascii=False).encode(),
                                              durable=False)
                        except OSError:  # a full disk: the store failed, so no output may stay visible
                            os.unlink(parts[-1], dir_fd=parent)
                            raise
                finally:
                    os.close(parent)
            finally:
                os.close(shard)  # releases the lock
                os.close(tmp_fd)
        except IsADirectoryError as exc:
            raise PermanentStoreError(f"{what}: a folder of that name exists") from exc
        except NotADirectoryError as exc:
            raise PermanentStoreError(f"{what}: a file stands where a folder is needed") from exc
        except PermissionError as exc:
            raise PermanentStoreError(f"{what}: permission denied") from exc
        except (OutputExists, PermanentStoreError):
            raise
        except OSError as exc:
            raise RetryableStoreError(f"{what}: {exc.strerror or exc}") from exc
        finally:
            if tmp is not None and os.path.lexists(tmp):
                os.unlink(tmp)
        return StoredObject(key=key, size=st.st_size, sha256=sha256, fingerprint=fingerprint, version=_identity(st))

    def _place(self, tmp_fd: int, tmp_name: str, parent: int, name: str, key: str, *, overwrite: bool,
               replaces: str | None) -> os.stat_result:
        """Move the temp file to ``name`` in ``parent`` (a rename never follows a link at the target: it
        replaces the link itself); return the placed file's status."""
        try:
            current = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and stat.S_ISDIR(current.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a folder of that name exists")
        if replaces is not None:
            if current is None or _identity(current) != replaces:
                raise OutputExists(f"{key!r} was changed by another writer")
            os.replace(tmp_name, name, src_dir_fd=tmp_fd, dst_dir_fd=parent)
        elif overwrite:
            os.replace(tmp_name, name, src_dir_fd=tmp_fd, dst_dir_fd=parent)
        else:
            try:  # atomic create-if-absent: fails if another writer got there first
                os.link(tmp_name, name, src_dir_fd=tmp_fd, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                raise OutputExists(f"{key!r} is already stored") from None
            os.unlink(tmp_name, dir_fd=tmp_fd)
        return os.stat(name, dir_fd=parent, follow_symlinks=False)

    def _temp_copy(self, path: str) -> str:
        """A durable file holding ``path``'s bytes inside the store's temp folder, ready to rename.

        A file already spooled under the temp folder is moved, not copied (the caller is done with it).
        """
        tmp_dir = self.ensure_tmp_dir()
        if os.path.dirname(os.path.abspath(path)) == tmp_dir:
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

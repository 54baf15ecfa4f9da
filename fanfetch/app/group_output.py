"""A group's output on the spool and in the store: the temp files its downloads land in, merging them, and
writing the merged output (or each file plus the done marker, for merge mode ``none``) through the store port.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from fanfetch.app.spool import MeteredPart, SpoolHold
from fanfetch.core.merge import INDEX_NAME, merge_streams, name_files
from fanfetch.core.models import FileResult, Group, GroupResult, GroupStatus, MergeMode
from fanfetch.core.redact import redact_url
from fanfetch.errors import OutputExists
from fanfetch.ports import ObjectStore, StoredObject

if TYPE_CHECKING:
    from fanfetch.app.services import GroupContext

__all__ = ["done_marker_key", "OutputWrite", "plan_write", "stored_as_is", "open_parts", "settle_spool", "store_merged",
           "store_each"]


def done_marker_key(group: Group) -> str:
    """For merge mode ``none`` (many objects per group): the object whose presence means "group done"."""
    return f"{group.key.rstrip('/')}/{INDEX_NAME}"  # name_files never gives a file this name


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._raw.write(data)


@dataclass(frozen=True)
class OutputWrite:
    """How the output is written: created (conditional), replacing a stale one, or overwritten (refresh)."""

    fingerprint: str
    overwrite: bool = False
    replaces: str | None = None


def plan_write(stored: StoredObject | None, fingerprint: str, *, refresh: bool) -> OutputWrite:
    """Only an output carrying this definition's fingerprint is current. Anything else at the key (an older
    definition, or an object fanfetch did not write) is replaced, conditionally on that very object."""
    if stored is None:
        return OutputWrite(fingerprint)
    if stored.fingerprint == fingerprint:
        return OutputWrite(fingerprint, overwrite=refresh)
    return OutputWrite(fingerprint, overwrite=stored.version is None, replaces=stored.version)


def stored_as_is(group: Group) -> bool:
    """Groups whose files are stored byte for byte (no merge): download them into named files, so
    the store can move them into place instead of copying (a 256 MiB file saves a full copy)."""
    return group.merge is MergeMode.NONE or (group.merge is MergeMode.CONCAT and len(group.sources) == 1)


def open_parts(group: Group, ctx: GroupContext, stack: ExitStack, hold: SpoolHold | None) -> list[BinaryIO]:
    """One writable file per source: named files for groups stored as is; otherwise small files stay
    in memory and larger ones roll over to disk in spool_dir (bounded memory either way). With a spool
    hold every write is metered against the group's share of the spool budget."""
    if stored_as_is(group):
        parts = [stack.enter_context(_named_part(ctx)) for _ in group.sources]
    else:
        parts = [
            stack.enter_context(tempfile.SpooledTemporaryFile(max_size=ctx.spool_memory_bytes, dir=ctx.spool_dir))
            for _ in group.sources
        ]
    if hold is None:
        return parts
    return [MeteredPart(p, hold) for p in parts]  # type: ignore[misc]


def settle_spool(ctx: GroupContext, parts: list[BinaryIO], results: list[FileResult], *, observe: bool = True) -> None:
    """Charge what the meter could not see (writes at offsets) and feed the budget's running estimate."""
    if ctx.spool is None:
        return
    for part, result in zip(parts, results, strict=True):
        if isinstance(part, MeteredPart) and not result.not_modified:
            part.settle(result.bytes)
    if observe:
        ctx.spool.observe([r.bytes for r in results if not r.not_modified])


@contextmanager
def _named_part(ctx: GroupContext) -> Iterator[BinaryIO]:
    handle = tempfile.NamedTemporaryFile(prefix="part-", dir=ctx.spool_dir, delete=False)  # noqa: SIM115
    try:
        yield handle  # type: ignore[misc]
    finally:
        handle.close()
        if os.path.exists(handle.name):  # the store may have moved it into place
            os.unlink(handle.name)


def _hash_file(handle: BinaryIO, chunk_bytes: int) -> tuple[str, int]:
    handle.flush()
    handle.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(chunk_bytes):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _digest_of(part: BinaryIO, result: FileResult, chunk_bytes: int) -> tuple[str, int]:
    """(sha256, size) of a downloaded file: the fetcher's, hashed on the way, when it gave one."""
    if result.sha256 is None:
        return _hash_file(part, chunk_bytes)
    part.flush()  # the store reads it by name
    return result.sha256, result.bytes


@contextmanager
def _spool_file(ctx: GroupContext, prefix: str) -> Iterator[tuple[str, BinaryIO]]:
    """A named temp file in the spool folder, removed afterwards unless the store moved it away."""
    handle = tempfile.NamedTemporaryFile(prefix=prefix, dir=ctx.spool_dir, delete=False)  # noqa: SIM115
    try:
        yield handle.name, handle  # type: ignore[misc]
    finally:
        handle.close()
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def store_merged(
    group: Group,
    ctx: GroupContext,
    parts: list[BinaryIO],
    results: list[FileResult],
    attempts: int,
    *,
    write: OutputWrite,
    unchanged_sha256: str | None = None,
) -> GroupResult:
    with ExitStack() as stack:
        if stored_as_is(group):  # one file, concat: the download itself is the output
            (part,), (result,) = parts, results
            digest, size = _digest_of(part, result, ctx.chunk_bytes)
            path = part.name  # type: ignore[attr-defined]
        else:
            path, raw = stack.enter_context(_spool_file(ctx, "merged-"))
            writer = _HashingWriter(raw)
            merge_streams(group.merge, parts, writer, chunk_bytes=ctx.chunk_bytes,  # type: ignore[arg-type]
                          labels=[r.url for r in results])
            raw.close()
            digest, size = writer.sha256.hexdigest(), writer.bytes
        stored = partial(GroupResult, group_id=group.group_id, status=GroupStatus.OK, key=group.key,
                         files=len(results), sha256=digest, attempts=attempts, file_results=tuple(results))
        if unchanged_sha256 is not None and digest == unchanged_sha256:
            # A refresh found the same bytes (no validators, or new ones): leave the output alone.
            return stored(bytes=size, change="unchanged")
        return stored(bytes=ctx.store.put_file(group.key, path, sha256=digest, overwrite=write.overwrite,
                                               fingerprint=write.fingerprint, replaces=write.replaces).size)


def store_each(
    group: Group,
    ctx: GroupContext,
    parts: list[BinaryIO],
    results: list[FileResult],
    attempts: int,
    *,
    write: OutputWrite,
) -> GroupResult:
    prefix = group.key.rstrip("/")
    names = name_files([r.url for r in results])  # the files stored (on_missing=skip leaves some out)
    entries = []
    total = 0
    for name, part, result in zip(names, parts, results, strict=True):
        digest, _ = _digest_of(part, result, ctx.chunk_bytes)
        part.close()
        size = _put_part(ctx.store, f"{prefix}/{name}", part.name, digest,  # type: ignore[attr-defined]
                         overwrite=write.overwrite)
        total += size
        entries.append({"name": name, "url": redact_url(result.url), "bytes": size, "sha256": digest})
    index = json.dumps({"group": group.group_id, "fingerprint": write.fingerprint, "files": entries},
                       indent=1).encode()
    group_digest = hashlib.sha256(index).hexdigest()
    # The marker goes last: its presence (with this fingerprint) means every file of the group is stored.
    ctx.store.put_bytes(done_marker_key(group), index, content_type="application/json",  # unconditional
                        fingerprint=write.fingerprint)
    return GroupResult(
        group_id=group.group_id,
        status=GroupStatus.OK,
        key=group.key,
        files=len(results),
        bytes=total,
        sha256=group_digest,
        attempts=attempts,
        file_results=tuple(results),
    )


def _put_part(store: ObjectStore, key: str, path: str, digest: str, *, overwrite: bool) -> int:
    """Store one file of a ``none`` group. A file already there is kept only if it holds these very bytes
    (an earlier delivery that died before writing the index); a stale one (an interrupted run of another
    definition, or a file fanfetch did not write) is replaced, so the index never lists a hash it lacks."""
    try:
        return store.put_file(key, path, sha256=digest, overwrite=overwrite).size
    except OutputExists:
        there = store.head(key)
        if there is not None and there.sha256 == digest:
            return there.size
        return store.put_file(key, path, sha256=digest, overwrite=there is None or there.version is None,
                              replaces=there.version if there is not None else None).size

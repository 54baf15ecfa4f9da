"""A small disk for disk-full tests: a tmpfs mounted for one test (root only; the test is skipped otherwise), and
bodies big enough to fill it, served by the fault origin without being held in memory."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["MIB", "BigBody", "big_sha256", "mounted_tmpfs"]

MIB = 2**20


def _block(seed: str) -> bytes:
    """1 MiB, distinct per seed."""
    return hashlib.sha256(seed.encode()).digest() * (MIB // 32)


@dataclass(frozen=True)
class BigBody:
    """A large body streamed from a repeated 1 MiB block (never held whole in memory)."""

    size: int
    seed: str

    def serve(self, ex) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.size}\r\nConnection: close\r\n\r\n".encode()
        if not ex.send(head):
            return
        block, remaining = _block(self.seed), self.size
        while remaining > 0 and ex.send(block[: min(remaining, len(block))]):
            remaining -= len(block)


def big_sha256(sizes: list[int], seeds: list[str]) -> str:
    """The sha256 of the ``BigBody`` bodies of these sizes and seeds, one after another (a concat merge of them)."""
    digest = hashlib.sha256()
    for size, seed in zip(sizes, seeds, strict=True):
        block = _block(seed)
        while size > 0:
            digest.update(block[: min(size, len(block))])
            size -= len(block)
    return digest.hexdigest()


@contextmanager
def mounted_tmpfs(mount: Path, *, size_mib: int) -> Iterator[Path]:
    """``mount`` (created here) as a ``size_mib`` MiB tmpfs, lazily unmounted afterwards; skips the test when
    not root or when the mount fails. Grow it with ``mount -o remount,size=…``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)

"""A small disk for disk-full tests: a tmpfs mounted for one test (root only; the test is skipped otherwise)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["mounted_tmpfs"]


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

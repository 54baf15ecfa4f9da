"""The spool budget: how many bytes of temp disk the groups in flight may use, so a worker never schedules
more than its /tmp holds. A group reserves its estimated need before it downloads, waits for room, is
metered while it writes, and is refused with the sizes when it needs more than the whole budget.
"""

from __future__ import annotations

import errno
import shutil
import threading
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from fanfetch.errors import DiskFull, FanfetchError, TooLargeForSpool

__all__ = ["MIB", "SpoolBudget", "SpoolHold", "SpoolExhausted", "MeteredPart", "spool_margin", "describe_bytes",
           "classify_spool_error"]

MIB = 2**20
_MIN_MARGIN = 16 * MIB
_MAX_MARGIN = 256 * MIB


def describe_bytes(size: int | float) -> str:
    """``150994944`` → ``"144.0 MiB"``; sizes in reasons are always MiB, so they compare at a glance."""
    return f"{size / MIB:.1f} MiB"


def spool_margin(disk_total: int) -> int:
    """Space kept free on the spool disk: 5 % of it, at least 16 MiB, at most 256 MiB (and on a disk
    smaller than 128 MiB, an eighth of it)."""
    return min(max(disk_total // 20, _MIN_MARGIN), _MAX_MARGIN, disk_total // 8)


class SpoolExhausted(OSError):
    """Raised from a metered write (so it travels through a fetcher like any disk error, ``ENOSPC``) when
    a group's need has grown past the whole budget: it can never fit, whatever else is in flight."""

    def __init__(self, group_id: str, need: int, written: int, factor: int, budget: int, where: str):
        self.group_id, self.need, self.written, self.factor, self.budget = group_id, need, written, factor, budget
        merged = f", x{factor} to merge" if factor > 1 else ""
        super().__init__(errno.ENOSPC, (
            f"group {group_id!r} needs more than {describe_bytes(need)} of temp space "
            f"({describe_bytes(written)} downloaded so far{merged}) but the worker's spool budget is "
            f"{describe_bytes(budget)} ({where}): give the worker more ephemeral storage or split the group"))


class SpoolBudget:
    """Bytes of spool disk the groups in flight may hold together; thread-safe.

    ``total`` is measured (free space of the spool folder minus a margin, capped) at creation and again
    by ``remeasure`` when nothing is held (a worker does so at the start of every batch). A running
    estimate of bytes per file, from the files downloaded so far, sizes groups whose manifest declares
    no sizes; before anything was measured such a group runs alone.
    """

    def __init__(self, measure: Callable[[], int], *, where: str = "spool"):
        self._measure = measure
        self.where = where
        self._cond = threading.Condition()
        self.total = max(0, measure())
        self.used = 0  # bytes reserved by the holds in flight (grown by metering past their estimate)
        self.holders = 0
        self.peak_used = 0
        self.peak_holders = 0
        self._files = 0
        self._file_bytes = 0

    @classmethod
    def for_dir(
        cls,
        path: str,
        *,
        cap_bytes: int | None = None,
        disk_usage: Callable[[str], Any] = shutil.disk_usage,
    ) -> SpoolBudget:
        """The budget of the disk holding ``path``: its free space minus ``spool_margin``, at most ``cap_bytes``."""

        def measure() -> int:
            usage = disk_usage(path)
            room = max(0, int(usage.free) - spool_margin(int(usage.total)))
            return room if cap_bytes is None else min(room, cap_bytes)

        return cls(measure, where=path)

    def remeasure(self) -> int:
        """Measure the disk again (only while nothing is held: holds would count twice); return the total."""
        with self._cond:
            if self.holders == 0:
                self.total = max(0, self._measure())
            return self.total

    def observe(self, file_sizes: Sequence[int]) -> None:
        """Feed the running estimate with the sizes of files just downloaded."""
        with self._cond:
            self._files += len(file_sizes)
            self._file_bytes += sum(file_sizes)
            if self._files:
                self._cond.notify_all()  # groups of unknown size waiting to run alone can now be sized

    def estimate(self, sizes: Sequence[int | None], *, factor: int) -> int | None:
        """A group's need in bytes: declared sizes, the running mean for the others; None when unknown."""
        known = sum(s for s in sizes if s is not None)
        unknown = sum(1 for s in sizes if s is None)
        if unknown:
            with self._cond:
                if self._files == 0:
                    return None
                mean = self._file_bytes / self._files
            known += int(unknown * mean)
        return known * factor

    def hold(
        self,
        group_id: str,
        sizes: Sequence[int | None],
        *,
        factor: int,
        give_up: Callable[[], FanfetchError | None] = lambda: None,
    ) -> SpoolHold:
        """Reserve the group's need, waiting until it fits (or nothing else is held).

        Raises TooLargeForSpool at once when declared sizes alone exceed the budget, and ``give_up()``'s
        error when it returns one while waiting (a stop request, a passed deadline); waiting is woken by
        every release and every measurement (a group of unknown size is sized again then), so it needs no timer.
        """
        declared = all(s is not None for s in sizes)
        need = self.estimate(sizes, factor=factor)
        if declared and need is not None and need > self.total:
            merged = f" (x{factor} to merge)" if factor > 1 else ""
            raise TooLargeForSpool(
                f"group {group_id!r} needs {describe_bytes(need)} of temp space for "
                f"{describe_bytes(need // factor)} of declared file sizes{merged} but the worker's spool budget is "
                f"{describe_bytes(self.total)} ({self.where}): give the worker more ephemeral storage or split the "
                "group")
        with self._cond:
            while True:
                error = give_up()
                if error is not None:
                    raise error
                if need is None:  # sizes measured since (by the groups in flight) may size it now
                    need = self.estimate(sizes, factor=factor)
                if self.holders == 0 or (need is not None and self.used + need <= self.total):
                    break
                self._cond.wait()
            reserved = need or 0
            self.used += reserved
            self.holders += 1
            self.peak_used = max(self.peak_used, self.used)
            self.peak_holders = max(self.peak_holders, self.holders)
        return SpoolHold(self, group_id, reserved, factor)

    def _grow(self, hold: SpoolHold, written: int) -> None:
        """Metering: the hold's projected need (bytes written x factor) raises its reservation."""
        with self._cond:
            need = written * hold.factor
            if need > self.total:
                raise SpoolExhausted(hold.group_id, need, written, hold.factor, self.total, self.where)
            if need > hold.reserved:
                self.used += need - hold.reserved
                hold.reserved = need
                self.peak_used = max(self.peak_used, self.used)

    def _release(self, hold: SpoolHold) -> None:
        with self._cond:
            self.used -= hold.reserved
            self.holders -= 1
            hold.reserved = 0
            self._cond.notify_all()


class SpoolHold:
    """One group's reservation; metered by its parts' writes, released once (a context manager)."""

    def __init__(self, budget: SpoolBudget, group_id: str, reserved: int, factor: int):
        self._budget = budget
        self.group_id = group_id
        self.reserved = reserved
        self.factor = factor
        self.written = 0
        self._lock = threading.Lock()
        self._released = False

    def charge(self, delta: int) -> None:
        """``delta`` bytes more (or fewer, after a truncate) of this group's downloads are on disk."""
        with self._lock:
            self.written = max(0, self.written + delta)
            written = self.written
        if delta > 0:
            self._budget._grow(self, written)

    def describe(self) -> str:
        return (f"{describe_bytes(self.written)} of group {self.group_id!r} on disk, "
                f"spool budget {describe_bytes(self._budget.total)} at {self._budget.where}")

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._budget._release(self)

    def __enter__(self) -> SpoolHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class MeteredPart:
    """A download's file with every write charged to its group's hold before it reaches the disk; all
    else (seek, read, name, fileno, close) is the wrapped file's. Writes at offsets through ``fileno``
    (ranged downloads) bypass the meter; ``settle`` charges them once the file is complete."""

    def __init__(self, raw: BinaryIO, hold: SpoolHold):
        self._raw = raw
        self._hold = hold
        self._bytes = 0
        # the calls made on every file (download, merge, store), bound once: no __getattr__ miss per call
        self.read, self.seek, self.tell, self.seekable, self.flush = (raw.read, raw.seek, raw.tell, raw.seekable,
                                                                      raw.flush)

    def write(self, data: bytes) -> int:
        self._hold.charge(len(data))
        self._bytes += len(data)
        return self._raw.write(data)

    def truncate(self, size: int | None = None) -> int:
        result = self._raw.truncate(size)
        kept = self._raw.tell() if size is None else size
        self._hold.charge(kept - self._bytes)
        self._bytes = kept
        return result

    def settle(self, size: int) -> None:
        """The file is complete at ``size`` bytes: charge what the meter did not see."""
        if size > self._bytes:
            self._hold.charge(size - self._bytes)
            self._bytes = size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def classify_spool_error(error: BaseException, hold: SpoolHold | None) -> BaseException:
    """A disk error of a group's spooling as a member of the error tree; anything else unchanged."""
    if isinstance(error, SpoolExhausted):
        return TooLargeForSpool(error.strerror)
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        where = f" ({hold.describe()})" if hold is not None else ""
        return DiskFull(f"no space left on the spool disk{where}: {error.strerror or error}")
    return error

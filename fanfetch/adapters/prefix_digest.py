"""Hashing a file written at offsets by several threads, following its contiguous written prefix."""

from __future__ import annotations

import bisect
import errno
import hashlib
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fanfetch.core.ranges import Part

if TYPE_CHECKING:
    from fanfetch.adapters.offset_sink import OffsetSink


class PrefixDigest:
    """Hashes a file written at offsets by several threads, on a thread of its own that follows the
    contiguous written prefix (each part is written front to back), so when the last byte lands only
    what was not yet contiguous remains to hash. A part written again from its start (a retried
    part) rolls the hashes back to that part's start: the digest is of the bytes the file ends with.
    """

    def __init__(self, sink: OffsetSink, parts: tuple[Part, ...], names: Iterable[str], *, chunk_bytes: int):
        self._sink = sink
        self._starts = [part.start for part in parts]
        self._lengths = [part.length for part in parts]
        self._size = parts[-1].stop if parts else 0
        self._chunk_bytes = chunk_bytes
        self._written = [0] * len(parts)  # bytes of each part written by its current attempt
        self._frontier = 0  # index of the first part not fully written
        self._hashed = 0  # bytes fed to the hashes
        self._reading_to = 0  # the hasher thread may be reading bytes up to here
        self._rollback: int | None = None  # a part start to go back to
        hashes = {name: hashlib.new(name, usedforsecurity=False) for name in names}  # integrity, not security
        self._checkpoints: dict[int, dict[str, Any]] = {0: hashes}  # hash states at part starts
        self._cond = threading.Condition()
        self._closed = False
        self._result: dict[str, str] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fanfetch-digest", daemon=True)
        self._thread.start()

    def writing(self, offset: int) -> None:
        """A write is about to land at ``offset``; at a part's start again, that part restarts."""
        with self._cond:
            index = bisect.bisect_right(self._starts, offset) - 1
            if offset != self._starts[index] or self._written[index] == 0:
                return
            self._written[index] = 0
            self._frontier = min(self._frontier, index)
            if self._reading_to > offset:  # bytes the hasher may have seen are being replaced
                self._rollback = offset if self._rollback is None else min(self._rollback, offset)

    def wrote(self, offset: int, size: int) -> None:
        """``size`` bytes were written at ``offset`` (the continuation of their part)."""
        with self._cond:
            index = bisect.bisect_right(self._starts, offset) - 1
            self._written[index] = offset + size - self._starts[index]
            frontier = self._frontier
            while frontier < len(self._lengths) and self._written[frontier] >= self._lengths[frontier]:
                frontier += 1
            self._frontier = frontier
            if index <= frontier:
                self._cond.notify_all()

    def result(self) -> dict[str, str]:
        """The hex digests of the whole file, once every byte is written (waits for the tail)."""
        with self._cond:
            self._cond.wait_for(lambda: self._result is not None or self._error is not None or self._closed)
            if self._error is not None:
                raise self._error
            if self._result is None:
                raise RuntimeError("the digest was closed before it was complete")
            return self._result

    def close(self) -> None:
        """Stop the hasher thread and wait for it: it never outlives the download."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _available(self) -> int:
        if self._frontier >= len(self._starts):
            return self._size
        return self._starts[self._frontier] + self._written[self._frontier]

    def _run(self) -> None:
        hashes = {name: h.copy() for name, h in self._checkpoints[0].items()}
        try:
            while True:
                with self._cond:
                    while True:
                        if self._closed:
                            return
                        if self._rollback is not None:
                            self._hashed = self._reading_to = self._rollback
                            hashes = {n: h.copy() for n, h in self._checkpoints[self._rollback].items()}
                            self._checkpoints = {at: c for at, c in self._checkpoints.items() if at <= self._hashed}
                            self._rollback = None
                        if self._hashed >= self._size:
                            self._result = {name: h.hexdigest() for name, h in hashes.items()}
                            self._cond.notify_all()
                            return
                        if self._available() > self._hashed:
                            break
                        self._cond.wait()
                    start = self._hashed
                    index = bisect.bisect_right(self._starts, start) - 1
                    stop = min(self._available(), start + self._chunk_bytes, self._starts[index] + self._lengths[index])
                    self._reading_to = stop
                data = self._sink.read_at(start, stop - start)
                if len(data) != stop - start:
                    raise OSError(errno.EIO, f"read {len(data)} of {stop - start} bytes written at {start}")
                for h in hashes.values():
                    h.update(data)
                with self._cond:
                    if self._rollback is None:  # else the bytes just read may be stale: go back first
                        self._hashed = stop
                        if stop < self._size and stop == self._starts[index] + self._lengths[index]:
                            self._checkpoints[stop] = {n: h.copy() for n, h in hashes.items()}
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that asks for the result
            with self._cond:
                self._error = exc
                self._cond.notify_all()


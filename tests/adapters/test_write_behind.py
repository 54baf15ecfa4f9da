"""WriteBehind on its own: a ranged download that is kept (stored as it is) asks the kernel to start
writing its pages to disk while it runs, never waits for it, and a refused hint changes nothing."""

from __future__ import annotations

import os
import sys
import tempfile
import threading

import pytest

from fanfetch.adapters.offset_sink import OffsetSink
from fanfetch.adapters.write_behind import WriteBehind, writeback_starter

WAIT_S = 5  # an upper bound for a thread to react; never reached when the code works
DATA = bytes(range(256)) * 4  # 1,024 bytes


class _Recorder:
    """A writeback starter that records the descriptors it was asked about (or refuses, as a full queue might)."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[int] = []
        self.refuse = refuse
        self.called = threading.Event()

    def __call__(self, fd: int) -> None:
        self.calls.append(fd)
        self.called.set()
        if self.refuse:
            raise OSError(5, "refused")


def _sink(handle, starter: _Recorder, stride: int) -> OffsetSink:
    fd = handle.fileno()
    return OffsetSink(handle, fd, None, True, WriteBehind(fd, starter, stride=stride))


def test_writeback_is_asked_for_once_a_stride_is_written_and_the_thread_ends_with_the_sink():
    # GIVEN a sink over a real file, writing behind every 512 bytes
    starter = _Recorder()
    with tempfile.TemporaryFile() as handle:
        sink = _sink(handle, starter, stride=512)
        behind = sink._behind
        # WHEN 256 bytes are written: below the stride
        sink.write_at(768, DATA[768:])
        # THEN nothing was asked yet
        assert starter.calls == []
        # WHEN the rest of the file is written, out of order
        sink.write_at(0, DATA[:768])
        # THEN writeback of this very file was asked for, from the write-behind thread
        assert starter.called.wait(WAIT_S)
        assert starter.calls[0] == handle.fileno()
        sink.close()
        # AND the file holds exactly what was written, and the thread is gone
        handle.seek(0)
        assert handle.read() == DATA
    assert not behind._thread.is_alive()


def test_a_refused_writeback_leaves_the_writes_alone():
    # GIVEN a starter that fails (the hint is refused)
    starter = _Recorder(refuse=True)
    with tempfile.TemporaryFile() as handle:
        sink = _sink(handle, starter, stride=100)
        # WHEN the whole file is written in small writes
        for at in range(0, len(DATA), 64):
            sink.write_at(at, DATA[at:at + 64])
        assert starter.called.wait(WAIT_S)
        sink.close()
        # THEN every write landed; the refusal only stopped the hints (asked once)
        handle.seek(0)
        assert handle.read() == DATA
        assert len(starter.calls) == 1


def test_only_a_kept_file_is_written_behind():
    with tempfile.TemporaryFile() as kept, tempfile.TemporaryFile() as spooled:
        # WHEN sinks open over a file that will be stored as it is, and over one that will be merged
        keep = OffsetSink.open(kept, size=len(DATA), need_read=True, write_behind=True)
        spool = OffsetSink.open(spooled, size=len(DATA), need_read=True)
        assert keep is not None and spool is not None
        try:
            # THEN only the kept one writes behind (where the platform can: Linux)
            assert (keep._behind is not None) == (writeback_starter() is not None)
            assert spool._behind is None
        finally:
            keep.close()
            spool.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_real_writeback_call_accepts_a_file_being_written():
    # GIVEN the platform's writeback call
    start = writeback_starter()
    assert start is not None
    with tempfile.NamedTemporaryFile() as handle:
        os.pwrite(handle.fileno(), DATA, 0)
        # WHEN writeback is started on it THEN it returns without error, and the bytes are those written
        start(handle.fileno())
        assert os.pread(handle.fileno(), len(DATA), 0) == DATA
        # AND a descriptor that is not a file is refused with an OSError (which WriteBehind swallows)
        read_end, write_end = os.pipe()
        try:
            with pytest.raises(OSError):
                start(read_end)
        finally:
            os.close(read_end)
            os.close(write_end)

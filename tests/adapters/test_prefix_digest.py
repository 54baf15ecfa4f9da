"""PrefixDigest on its own: parts written out of order, and a part rewritten after the hasher had
already read its first bytes — the digest must be of the bytes the file ends with."""

from __future__ import annotations

import hashlib
import io
import threading

from fanfetch.adapters.offset_sink import OffsetSink
from fanfetch.core.ranges import plan_parts

SIZE = 3000
PARTS = plan_parts(SIZE, part_bytes=1000, connections=3)  # 0-1000, 1000-2000, 2000-3000
FINAL = hashlib.shake_256(b"final").digest(SIZE)
STALE = hashlib.shake_256(b"stale").digest(SIZE)
WAIT_S = 5  # an upper bound for a thread to react; never reached when the code works


class _WatchedSink(OffsetSink):
    """A BytesIO sink that records each range the hasher reads; ``seen_past_1000`` once one ends after byte 1000."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), None, None, True)
        self.reads: list[tuple[int, int]] = []
        self.seen_past_1000 = threading.Event()

    def read_at(self, offset: int, size: int) -> bytes:
        data = super().read_at(offset, size)
        self.reads.append((offset, offset + len(data)))
        if offset + len(data) > 1000:
            self.seen_past_1000.set()
        return data


def test_parts_written_last_to_first_hash_to_the_whole_file():
    # GIVEN a sink followed by a digest
    sink = _WatchedSink()
    digest = sink.follow(PARTS, ["sha256", "md5"], chunk_bytes=256)
    try:
        # WHEN the parts are written last first, each front to back in small writes
        for part in reversed(PARTS):
            for at in range(part.start, part.stop, 100):
                sink.write_at(at, FINAL[at:min(at + 100, part.stop)])
        # THEN the digests are those of the file
        assert digest.result() == {"sha256": hashlib.sha256(FINAL).hexdigest(), "md5": hashlib.md5(FINAL).hexdigest()}
    finally:
        sink.close()
    # AND every byte was read back exactly once, in order
    assert sink.reads[0][0] == 0 and sink.reads[-1][1] == SIZE
    assert all(a[1] == b[0] for a, b in zip(sink.reads, sink.reads[1:], strict=False))


def test_a_part_rewritten_after_it_was_hashed_is_hashed_again():
    # GIVEN a digest that has already read the first bytes of part 1, from a first (stale) attempt
    sink = _WatchedSink()
    digest = sink.follow(PARTS, ["sha256"], chunk_bytes=256)
    try:
        sink.write_at(0, FINAL[:1000])
        sink.write_at(1000, STALE[1000:1500])
        assert sink.seen_past_1000.wait(WAIT_S)
        # WHEN part 1 is written again from its start (a retried part), then the rest
        sink.write_at(1000, FINAL[1000:2000])
        sink.write_at(2000, FINAL[2000:])
        # THEN the digest is that of the final bytes, not of the stale ones it had seen
        assert digest.result() == {"sha256": hashlib.sha256(FINAL).hexdigest()}
    finally:
        sink.close()


def test_closing_an_unfinished_digest_stops_its_thread():
    # GIVEN a digest waiting for bytes that will never come
    sink = _WatchedSink()
    sink.follow(PARTS, ["sha256"], chunk_bytes=256)
    sink.write_at(0, FINAL[:10])
    # WHEN the sink is closed (the download failed) / THEN its hasher thread is gone
    sink.close()
    assert not [t for t in threading.enumerate() if t.name == "fanfetch-digest"]

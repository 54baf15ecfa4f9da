"""The local run's per-group memory: results spooled to disk in manifest order, stored groups as hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fanfetch.app.local_run import _ResultsSpool, _StoredFilter


def test_results_added_in_finishing_order_come_out_in_manifest_order(tmp_path: Path) -> None:
    # GIVEN a spool for 4 groups, lines added as groups finish (one longer than a read, one group never finished)
    spool = _ResultsSpool(4, folder=str(tmp_path))
    long = b"x" * 70_000 + b"\n"
    spool.add(2, b"two\n")
    spool.add(0, long)
    spool.add(3, b"three\n")
    # WHEN they are written out
    out = tmp_path / "results.jsonl"
    digest = spool.write_ordered(str(out))
    spool.close()
    # THEN they are in manifest order, whole, and the digest is of the file
    assert out.read_bytes() == long + b"two\nthree\n"
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()


def test_the_stored_filter_knows_exactly_the_stored_ids() -> None:
    stored = _StoredFilter(f"g{i}" for i in range(10_000))
    assert all(f"g{i}" in stored for i in range(10_000))
    assert not any(f"h{i}" in stored for i in range(10_000))
    assert "g1" not in _StoredFilter(())

"""``fanfetch run`` into a folder on a disk that fills up: the groups that hit the full disk fail cleanly, the
summary and results.jsonl are still written, and a re-run once there is room completes byte-exact.

Needs root to mount a small tmpfs; skipped cleanly otherwise."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from fanfetch.cli.main import main
from tests.origin_faults import FaultOrigin
from tests.tmpfs import MIB, BigBody, big_sha256, mounted_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path):
    with mounted_tmpfs(tmp_path / "disk", size_mib=32) as mount:
        yield mount


@pytest.fixture
def origin():
    server = FaultOrigin()
    try:
        yield server
    finally:
        server.close()


def _results(dest: Path) -> dict[str, dict]:
    (path,) = list((dest / "_jobs").glob("*/results.jsonl"))
    return {r["group"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_a_full_disk_fails_the_affected_groups_cleanly_and_a_rerun_with_room_completes(
        tmp_path, small_disk, origin, capsys):
    # GIVEN eight groups of 2 x 2 MiB merged (32 MiB of outputs) and a destination on a 32 MiB disk
    lines = []
    for g in range(8):
        urls = [origin.add(f"/g{g}/{i}", BigBody(2 * MIB, f"g{g}-{i}")) for i in range(2)]
        lines.append({"group": f"g{g}", "urls": urls, "key": f"out/g{g}.bin", "merge": "concat"})
    manifest = tmp_path / "job.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    dest = small_disk / "dest"
    args = ["run", str(manifest), "--out", str(dest), "--allow-host", f"127.0.0.1:{origin.port}", "--quiet"]
    # WHEN it runs
    code = main(args)
    # THEN it ends with exit 1, not a traceback: the groups that met the full disk failed with a classified reason
    out = capsys.readouterr().out
    assert code == 1
    results = _results(dest)
    failed = {g: r for g, r in results.items() if r["status"] == "failed"}
    assert len(results) == 8 and failed, results
    for record in failed.values():
        assert "no space left" in record["error"].lower(), record["error"]
    assert "failed" in out  # the summary was printed
    # AND no partial output is visible, and no temp file is left behind
    for group, record in results.items():
        path = dest / "out" / f"{group}.bin"
        assert path.exists() == (record["status"] == "ok")
    assert list((dest / ".fanfetch-tmp").iterdir()) == []
    # WHEN the disk grows and the same command runs again
    subprocess.run(["mount", "-o", "remount,size=96m", str(small_disk)], check=True)
    again = main(args)
    # THEN every group is stored byte-exact
    assert again == 0
    assert all(r["status"] == "ok" for r in _results(dest).values())
    for g in range(8):
        data = (dest / "out" / f"g{g}.bin").read_bytes()
        assert hashlib.sha256(data).hexdigest() == big_sha256([2 * MIB] * 2, [f"g{g}-0", f"g{g}-1"])

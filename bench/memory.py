"""Scenario 4, bounded memory: one 1 GiB group (4 × 256 MiB files), csv and concat, stored to a local
folder and to S3 (moto server, in its own process) — the ``fanfetch run`` process's peak RSS per case."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.common import ScenarioFailed, Table, fanfetch_cmd, run_child
from bench.data import HEADER, csv_file
from bench.origin import start_origin

__all__ = ["MemoryParams", "run_memory", "MotoServer"]

_MIB = 2**20
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MemoryParams:
    files: int = 4
    file_bytes: int = 256 * _MIB
    rss_budget_mib: int = 256  # what the original deployment gave its workers
    s3: bool = True

    @classmethod
    def smoke(cls) -> MemoryParams:
        return cls(files=2, file_bytes=2 * _MIB, s3=False)


class MotoServer:
    """``moto_server`` as a separate process on a free loopback port (so it is not in our RSS)."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start")

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)


def _write_csv(path: str, size: int) -> tuple[bytes, int]:
    """A CSV of ``size`` bytes or a little more; returns its header and total length."""
    block = csv_file(7, 3, _MIB)[len(HEADER) :]
    written = 0
    with open(path, "wb") as handle:
        handle.write(HEADER)
        written += len(HEADER)
        while written < size:
            handle.write(block)
            written += len(block)
    return HEADER, written


def _expected_digest(path: str, files: int, mode: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    total = 0
    for i in range(files):
        with open(path, "rb") as handle:
            if mode == "csv" and i > 0:
                handle.seek(len(HEADER))
            while chunk := handle.read(4 * _MIB):
                digest.update(chunk)
                total += len(chunk)
    return digest.hexdigest(), total


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * _MIB):
            digest.update(chunk)
    return digest.hexdigest()


def run_memory(params: MemoryParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    root = os.path.join(workdir, "origin-memory")
    os.makedirs(root, exist_ok=True)
    source = os.path.join(root, "part.csv")
    _write_csv(source, params.file_bytes)
    group_mib = params.files * os.path.getsize(source) / _MIB
    table = Table(
        title=f"Bounded memory: one group of {params.files} × {params.file_bytes / _MIB:.0f} MiB "
        f"({group_mib:,.0f} MiB)",
        columns=["merge", "destination", "wall s", "MB/s", "peak RSS MiB", f"≤ {params.rss_budget_mib} MiB"],
        command="python -m bench.run --only memory",
    )
    moto = MotoServer() if params.s3 else None
    try:
        with start_origin(root, prefer=prefer_origin, workers=2) as origin:
            table.notes.append(
                f"origin: {origin.kind}" + (", S3: moto server (separate process)" if moto else "")
            )
            if moto is not None:
                moto.client().create_bucket(Bucket="bench")  # type: ignore[attr-defined]
            for mode in ("csv", "concat"):
                expected, size = _expected_digest(source, params.files, mode)
                manifest = os.path.join(workdir, f"memory-{mode}.jsonl")
                urls = [f"{origin.base_url}part.csv?part={i}" for i in range(params.files)]
                with open(manifest, "w", encoding="utf-8") as handle:
                    handle.write(
                        json.dumps({"group": "big", "urls": urls, "key": f"{mode}/big.{mode}", "merge": mode})
                        + "\n"
                    )
                dests = [("local folder", os.path.join(workdir, f"out-memory-{mode}"))]
                if moto is not None:
                    dests.append(("S3 (moto server)", f"s3://bench/{mode}"))
                for label, dest in dests:
                    env = dict(_FAKE_AWS)
                    args = [
                        "run",
                        manifest,
                        "--out",
                        dest,
                        "--allow-host",
                        origin.host_port,
                        "--quiet",
                        "--concurrency",
                        "4",
                    ]
                    if moto is not None and dest.startswith("s3://"):
                        args += ["--endpoint-url", moto.url]
                    run = run_child(fanfetch_cmd(*args), env=env).check()
                    _verify(dest, mode, expected, size, moto)
                    if not dest.startswith("s3://"):
                        shutil.rmtree(dest, ignore_errors=True)
                    ok = run.peak_rss_mib <= params.rss_budget_mib
                    table.add(
                        mode,
                        label,
                        run.wall_s,
                        size / 1e6 / run.wall_s,
                        run.peak_rss_mib,
                        "yes" if ok else "NO",
                    )
                    table.targets.append(
                        (
                            f"{mode} → {label}: peak RSS {run.peak_rss_mib:.0f} MiB "
                            f"≤ {params.rss_budget_mib} MiB",
                            ok,
                        )
                    )
    finally:
        if moto is not None:
            moto.stop()
        os.unlink(source)
    return table


def _verify(dest: str, mode: str, expected: str, size: int, moto: MotoServer | None) -> None:
    key = f"big.{mode}"
    if dest.startswith("s3://"):
        assert moto is not None
        head = moto.client().head_object(Bucket="bench", Key=f"{mode}/{mode}/{key}")  # type: ignore[attr-defined]
        if head["ContentLength"] != size:
            raise ScenarioFailed(f"S3 {mode}: {head['ContentLength']} bytes, expected {size}")
        return
    path = os.path.join(dest, mode, key)
    if _sha256_file(path) != expected:
        raise ScenarioFailed(f"{path}: wrong bytes")

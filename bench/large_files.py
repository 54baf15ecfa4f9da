"""Scenario 3, large files: one big file from an origin capped per connection. ``fanfetch run`` vs
``aria2c -x N -s N`` vs a single stream (curl-like, one connection) vs the limit N × cap."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass

import requests

from bench.common import ScenarioFailed, Table, fanfetch_cmd, run_child
from bench.origin import start_origin
from bench.small_files import run_aria2c

__all__ = ["LargeFilesParams", "run_large_files"]

_MIB = 2**20


@dataclass(frozen=True)
class LargeFilesParams:
    file_bytes: int = 256 * _MIB
    cap_bytes_s: int = 20_000_000  # 20 MB/s per connection (nginx limit_rate)
    connections: tuple[int, ...] = (8, 16)

    @classmethod
    def smoke(cls) -> LargeFilesParams:
        return cls(file_bytes=4 * _MIB, cap_bytes_s=40_000_000, connections=(4,))


def _write_big(path: str, size: int) -> str:
    """A file of ``size`` pseudo-random bytes (incompressible); returns its sha256."""
    digest = hashlib.sha256()
    block = hashlib.shake_256(b"fanfetch-bench").digest(_MIB)
    with open(path, "wb") as handle:
        written = 0
        counter = 0
        while written < size:
            chunk = (counter.to_bytes(8, "big") + block)[: min(_MIB, size - written)]
            handle.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            counter += 1
    return digest.hexdigest()


def _single_stream(url: str, dest: str) -> float:
    started = time.monotonic()
    with requests.get(url, stream=True, timeout=60) as response, open(dest, "wb") as out:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=_MIB):
            out.write(chunk)
    return time.monotonic() - started


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * _MIB):
            digest.update(chunk)
    return digest.hexdigest()


def run_large_files(params: LargeFilesParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    root = os.path.join(workdir, "origin-large")
    os.makedirs(root, exist_ok=True)
    source = os.path.join(root, "big.bin")
    expected = _write_big(source, params.file_bytes)
    size_mb = params.file_bytes / 1e6
    table = Table(
        title=f"Large file: {params.file_bytes / _MIB:.0f} MiB, origin capped at "
        f"{params.cap_bytes_s / 1e6:.0f} MB/s per connection",
        columns=["N", "tool", "wall s", "MB/s", "% of limit", "speed vs aria2c"],
        command="python -m bench.run --only large",
    )
    with start_origin(root, rate_bytes_s=params.cap_bytes_s, prefer=prefer_origin, workers=2) as origin:
        table.notes.append(
            f"origin: {origin.kind}" + ("" if origin.kind == "nginx" else " (no rate cap, no Range)")
        )
        url = origin.base_url + "big.bin"
        single_path = os.path.join(workdir, "single.bin")
        single = _single_stream(url, single_path)
        if _sha256(single_path) != expected:
            raise ScenarioFailed("single stream: wrong bytes")
        os.unlink(single_path)
        manifest = os.path.join(workdir, "large.jsonl")
        with open(manifest, "w", encoding="utf-8") as handle:
            handle.write(
                json.dumps({"group": "big", "urls": [url], "key": "big.bin", "merge": "concat"}) + "\n"
            )
        for n in params.connections:
            limit = n * params.cap_bytes_s / 1e6
            out = os.path.join(workdir, f"out-large-{n}")
            shutil.rmtree(out, ignore_errors=True)
            run = run_child(
                fanfetch_cmd(
                    "run",
                    manifest,
                    "--out",
                    out,
                    "--concurrency",
                    str(n),
                    "--allow-host",
                    origin.host_port,
                    "--quiet",
                )
            ).check()
            if _sha256(os.path.join(out, "big.bin")) != expected:
                raise ScenarioFailed("fanfetch: wrong bytes")
            shutil.rmtree(out, ignore_errors=True)
            aria = None
            if shutil.which("aria2c"):
                aria_out = os.path.join(workdir, f"out-aria2c-large-{n}")
                shutil.rmtree(aria_out, ignore_errors=True)
                aria = run_aria2c(
                    [(url, "big.bin")],
                    aria_out,
                    workdir,
                    jobs=1,
                    extra=(f"-x{n}", f"-s{n}", "--min-split-size=1M"),
                )
                if _sha256(os.path.join(aria_out, "big.bin")) != expected:
                    raise ScenarioFailed("aria2c: wrong bytes")
                shutil.rmtree(aria_out, ignore_errors=True)
            ours = size_mb / run.wall_s
            table.add(
                n,
                "fanfetch run",
                run.wall_s,
                ours,
                f"{100 * ours / limit:.0f} %",
                f"{aria / run.wall_s:.2f}×" if aria else None,
            )
            if aria:
                table.add(
                    n,
                    f"aria2c -x {n} -s {n}",
                    aria,
                    size_mb / aria,
                    f"{100 * size_mb / aria / limit:.0f} %",
                    "1.00×",
                )
            table.add(
                n,
                "single stream (requests, 1 MiB reads)",
                single,
                size_mb / single,
                f"{100 * size_mb / single / limit:.0f} %",
                f"{aria / single:.2f}×" if aria else None,
            )
            table.add(n, "limit: N × cap", size_mb / limit, limit, "100 %", None)
            table.targets.append((f"N={n}: ≥ 85 % of limit", ours >= 0.85 * limit))
            if aria:
                table.targets.append((f"N={n}: within 10 % of aria2c's time", run.wall_s <= 1.1 * aria))
            table.notes.append(f"N={n}: fanfetch peak RSS {run.peak_rss_mib:.0f} MiB")
    os.unlink(source)
    return table

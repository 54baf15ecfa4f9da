"""Scenario 3, large files: one big file from an origin capped per connection. ``fanfetch run`` vs
``aria2c -x N -s N`` vs a single stream (curl-like, one connection) vs the limit N × cap; a second size
at the same N separates a fixed per-process cost from a throughput gap (two-point fit)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass

import requests

from bench.common import ScenarioFailed, Table, run_fanfetch
from bench.origin import start_origin
from bench.small_files import run_aria2c

__all__ = ["LargeFilesParams", "run_large_files", "fit_fixed_cost"]

_MIB = 2**20


@dataclass(frozen=True)
class LargeFilesParams:
    file_bytes: int = 256 * _MIB
    cap_bytes_s: int = 20_000_000  # 20 MB/s per connection (nginx limit_rate)
    connections: tuple[int, ...] = (8, 16)
    # Extra (size, N) runs: wall = fixed + size / throughput, fitted against the file_bytes run at the
    # same N, tells a per-process cost (start-up, hashing) from a throughput gap.
    extra_cases: tuple[tuple[int, int], ...] = ((1024 * _MIB, 16),)

    @classmethod
    def smoke(cls) -> LargeFilesParams:
        return cls(
            file_bytes=4 * _MIB, cap_bytes_s=40_000_000, connections=(4,), extra_cases=((8 * _MIB, 4),)
        )


def fit_fixed_cost(small: tuple[float, float], big: tuple[float, float]) -> tuple[float, float]:
    """From two ``(bytes, wall s)`` points, ``(fixed s, marginal MB/s)`` of ``wall = fixed + bytes / rate``."""
    (b1, t1), (b2, t2) = small, big
    if t2 <= t1 or b2 <= b1:
        return float("nan"), float("nan")
    rate = (b2 - b1) / (t2 - t1)
    return t1 - b1 / rate, rate / 1e6


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


def _size_label(size: int) -> str:
    return f"{size / 2**30:.0f} GiB" if size >= 2**30 and size % 2**30 == 0 else f"{size / _MIB:.0f} MiB"


def run_large_files(params: LargeFilesParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    root = os.path.join(workdir, "origin-large")
    os.makedirs(root, exist_ok=True)
    cases = [(params.file_bytes, n) for n in params.connections] + list(params.extra_cases)
    table = Table(
        title=f"Large file: {_size_label(params.file_bytes)}"
        + "".join(f" and {_size_label(s)} at N = {n}" for s, n in params.extra_cases)
        + f", origin capped at {params.cap_bytes_s / 1e6:.0f} MB/s per connection",
        columns=["file / N", "tool", "wall s", "MB/s", "% of limit", "speed vs aria2c"],
        command="python -m bench.run --only large",
    )
    walls: dict[tuple[str, int, int], float] = {}  # (tool, size, N) -> wall s
    with start_origin(root, rate_bytes_s=params.cap_bytes_s, prefer=prefer_origin, workers=2) as origin:
        table.notes.append(
            f"origin: {origin.kind}" + ("" if origin.kind == "nginx" else " (no rate cap, no Range)")
        )
        for size in sorted({s for s, _ in cases}):
            name = f"big-{size}.bin"
            expected = _write_big(os.path.join(root, name), size)
            url = origin.base_url + name
            # One stream is 20 MB/s whatever the size: timed on the main size only (1 GiB would be 54 s).
            single = None
            if size == params.file_bytes:
                single_path = os.path.join(workdir, "single.bin")
                single = _single_stream(url, single_path)
                if _sha256(single_path) != expected:
                    raise ScenarioFailed("single stream: wrong bytes")
                os.unlink(single_path)
            for n in [n for s, n in cases if s == size]:
                _one_case(table, params, workdir, origin.host_port, url, size, n, expected, single, walls)
            os.unlink(os.path.join(root, name))
    _note_fits(table, params, walls)
    return table


def _one_case(
    table: Table,
    params: LargeFilesParams,
    workdir: str,
    host_port: str,
    url: str,
    size: int,
    n: int,
    expected: str,
    single: float | None,
    walls: dict[tuple[str, int, int], float],
) -> None:
    size_mb = size / 1e6
    label = _size_label(size)
    case = f"{label} / {n}"  # one cell: the CI smoke reads (case, tool) from the first two columns
    limit = n * params.cap_bytes_s / 1e6
    manifest = os.path.join(workdir, "large.jsonl")
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"group": "big", "urls": [url], "key": "big.bin", "merge": "concat"}) + "\n")
    out = os.path.join(workdir, f"out-large-{n}")
    shutil.rmtree(out, ignore_errors=True)
    run = run_fanfetch(manifest, out, concurrency=n, allow_host=host_port)
    if _sha256(os.path.join(out, "big.bin")) != expected:
        raise ScenarioFailed("fanfetch: wrong bytes")
    shutil.rmtree(out, ignore_errors=True)
    aria = None
    if shutil.which("aria2c"):
        aria_out = os.path.join(workdir, f"out-aria2c-large-{n}")
        shutil.rmtree(aria_out, ignore_errors=True)
        aria = run_aria2c(
            [(url, "big.bin")], aria_out, workdir, jobs=1, extra=(f"-x{n}", f"-s{n}", "--min-split-size=1M")
        )
        if _sha256(os.path.join(aria_out, "big.bin")) != expected:
            raise ScenarioFailed("aria2c: wrong bytes")
        shutil.rmtree(aria_out, ignore_errors=True)
        walls[("aria2c", size, n)] = aria
    walls[("fanfetch", size, n)] = run.wall_s
    ours = size_mb / run.wall_s
    table.add(
        case,
        "fanfetch run",
        run.wall_s,
        ours,
        f"{100 * ours / limit:.0f} %",
        f"{aria / run.wall_s:.2f}×" if aria else None,
    )
    if aria:
        table.add(
            case, f"aria2c -x {n} -s {n}", aria, size_mb / aria, f"{100 * size_mb / aria / limit:.0f} %", "1.00×"
        )
    if single is not None:
        table.add(
            case,
            "single stream (requests, 1 MiB reads)",
            single,
            size_mb / single,
            f"{100 * size_mb / single / limit:.0f} %",
            f"{aria / single:.2f}×" if aria else None,
        )
    table.add(case, "limit: N × cap", size_mb / limit, limit, "100 %", None)
    table.targets.append((f"{label}, N={n}: ≥ 85 % of limit ({100 * ours / limit:.0f} %)", ours >= 0.85 * limit))
    if aria:
        table.targets.append(
            (f"{label}, N={n}: within 10 % of aria2c's time ({aria / run.wall_s:.2f}×)", run.wall_s <= 1.1 * aria)
        )
    table.notes.append(f"{label}, N={n}: fanfetch peak RSS {run.peak_rss_mib:.0f} MiB")


def _note_fits(table: Table, params: LargeFilesParams, walls: dict[tuple[str, int, int], float]) -> None:
    for size, n in params.extra_cases:
        for tool in ("fanfetch", "aria2c"):
            small, big = walls.get((tool, params.file_bytes, n)), walls.get((tool, size, n))
            if small is None or big is None:
                continue
            fixed, rate = fit_fixed_cost((params.file_bytes, small), (size, big))
            limit = n * params.cap_bytes_s / 1e6
            table.notes.append(
                f"N={n}, {tool}, fit over {_size_label(params.file_bytes)} and {_size_label(size)}: "
                f"fixed {fixed:.2f} s + bytes at {rate:.0f} MB/s ({100 * rate / limit:.0f} % of the limit)"
            )

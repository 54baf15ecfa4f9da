"""Scenario 2, small files: many ~1 KB files behind per-request latency. ``fanfetch run`` (whole process,
merged into a local folder) vs ``aria2c -j N`` vs a serial loop vs the bound concurrency / latency."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import requests

from bench.common import ScenarioFailed, Table, run_fanfetch
from bench.data import DataSet, group_sizes, sample_urls, verify_outputs, write_dataset, write_manifest
from bench.origin import Origin, start_origin

__all__ = ["SmallFilesParams", "run_small_files", "serial_rate", "run_aria2c"]


@dataclass(frozen=True)
class SmallFilesParams:
    groups: int = 200
    files_per_group: int = 24
    file_bytes: int = 1024
    latency_s: float = 0.050
    concurrencies: tuple[int, ...] = (32, 64)
    serial_sample: int = 100  # the serial loop is timed on this many files and extrapolated

    @classmethod
    def smoke(cls) -> SmallFilesParams:
        return cls(groups=6, files_per_group=4, latency_s=0.005, concurrencies=(4,), serial_sample=8)


def serial_rate(urls: Sequence[str]) -> float:
    """Files/s of one request after another over a keep-alive session (what the original script did)."""
    with requests.Session() as session:
        session.trust_env = False
        started = time.monotonic()
        for url in urls:
            response = session.get(url, timeout=30)
            response.raise_for_status()
        return len(urls) / (time.monotonic() - started)


def run_aria2c(
    urls: Sequence[tuple[str, str]], out: str, workdir: str, *, jobs: int, extra: Sequence[str] = ()
) -> float:
    """Download ``(url, relative path)`` pairs with aria2c; return wall seconds (whole process)."""
    listing = os.path.join(workdir, "aria2c-input.txt")
    with open(listing, "w", encoding="utf-8") as handle:
        handle.writelines(f"{url}\n  out={path}\n" for url, path in urls)
    argv = [
        "aria2c",
        "-i",
        listing,
        "-d",
        out,
        "-j",
        str(jobs),
        "--quiet=true",
        "--summary-interval=0",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        "--file-allocation=none",
        "--check-certificate=false",
        "--no-conf=true",
        *extra,
    ]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise ScenarioFailed(
            f"aria2c exited {result.returncode}: {result.stdout[-1000:]} {result.stderr[-1000:]}"
        )
    return wall


def _check_aria2c(out: str, dataset: DataSet, root: str, files: Sequence[tuple[str, str]]) -> None:
    for url, rel in files:
        pool = url.split("?", 1)[0].split("/", 3)[3]
        if os.path.getsize(os.path.join(out, rel)) != os.path.getsize(os.path.join(root, pool)):
            raise ScenarioFailed(f"aria2c: {rel} has the wrong size")


def run_small_files(params: SmallFilesParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    dataset = DataSet(
        "small",
        tuple(group_sizes(params.groups, params.groups * params.files_per_group)),
        params.file_bytes,
        pool=params.groups * params.files_per_group,
    )
    root = os.path.join(workdir, "origin")
    write_dataset(root, dataset)
    table = Table(
        title=f"Small files: {dataset.files:,} files ({params.groups} groups × {params.files_per_group}, "
        f"~{params.file_bytes} B), {params.latency_s * 1000:.0f} ms per request",
        columns=["concurrency", "tool", "wall s", "files/s", "% of limit", "speed vs aria2c"],
        command="python -m bench.run --only small",
    )
    with start_origin(root, latency_s=params.latency_s, prefer=prefer_origin) as origin:
        table.notes.append(f"origin: {origin.kind}")
        manifest = os.path.join(workdir, "small.jsonl")
        write_manifest(manifest, dataset, origin.base_url)
        serial = serial_rate(sample_urls(dataset, origin.base_url, params.serial_sample))
        for concurrency in params.concurrencies:
            _one_concurrency(table, params, dataset, origin, root, manifest, workdir, concurrency, serial)
    return table


def _one_concurrency(
    table: Table,
    params: SmallFilesParams,
    dataset: DataSet,
    origin: Origin,
    root: str,
    manifest: str,
    workdir: str,
    concurrency: int,
    serial: float,
) -> None:
    files = dataset.files
    limit = concurrency / params.latency_s
    out = os.path.join(workdir, f"out-small-{concurrency}")
    shutil.rmtree(out, ignore_errors=True)
    run = run_fanfetch(manifest, out, concurrency=concurrency, allow_host=origin.host_port)
    verify_outputs(root, out, dataset)
    ours = files / run.wall_s
    aria_wall = None
    if shutil.which("aria2c"):
        aria_out = os.path.join(workdir, f"out-aria2c-{concurrency}")
        shutil.rmtree(aria_out, ignore_errors=True)
        pairs = [
            (url, f"{g}/{i}.csv") for g, urls in dataset.urls(origin.base_url) for i, url in enumerate(urls)
        ]
        aria_wall = run_aria2c(pairs, aria_out, workdir, jobs=concurrency)
        _check_aria2c(aria_out, dataset, root, pairs)
        shutil.rmtree(aria_out, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    table.add(
        concurrency,
        "fanfetch run",
        run.wall_s,
        ours,
        f"{100 * ours / limit:.0f} %",
        f"{aria_wall / run.wall_s:.2f}×" if aria_wall else None,
    )
    if aria_wall:
        table.add(
            concurrency,
            f"aria2c -j {concurrency}",
            aria_wall,
            files / aria_wall,
            f"{100 * files / aria_wall / limit:.0f} %",
            "1.00×",
        )
    table.add(
        concurrency,
        "serial loop (sampled)",
        files / serial,
        serial,
        f"{100 * serial / limit:.1f} %",
        f"{aria_wall / (files / serial):.3f}×" if aria_wall else None,
    )
    table.add(concurrency, "limit: concurrency / latency", files / limit, limit, "100 %", None)
    table.targets.append(
        (f"c={concurrency}: ≥ 90 % of limit ({100 * ours / limit:.0f} %)", ours >= 0.9 * limit)
    )
    if aria_wall:
        table.targets.append((f"c={concurrency}: faster than aria2c", run.wall_s < aria_wall))
    table.notes.append(f"c={concurrency}: fanfetch peak RSS {run.peak_rss_mib:.0f} MiB")

"""Scenario 7, the HTTP engine at the machine's speed: 9,600 files of ~1 KB at c = 128 behind 20 ms of
latency (bound: c / latency), and CPU per file with no latency at c = 32; ``fanfetch run`` side by side
with ``curl --parallel`` and ``aria2c -j`` in the same run, each a whole process (wall, CPU from rusage)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import ChildRun, ScenarioFailed, Table, run_child, run_fanfetch
from bench.data import DataSet, group_sizes, verify_outputs, write_dataset, write_manifest
from bench.origin import start_origin

__all__ = ["HighConcurrencyParams", "run_high_concurrency"]


@dataclass(frozen=True)
class HighConcurrencyParams:
    groups: int = 400
    files: int = 9_600
    file_bytes: int = 1024
    cases: tuple[tuple[int, float], ...] = ((128, 0.020), (32, 0.0))  # (concurrency, latency s)

    @classmethod
    def smoke(cls) -> HighConcurrencyParams:
        return cls(groups=8, files=64, cases=((8, 0.002), (4, 0.0)))


def _pairs(dataset: DataSet, base_url: str) -> list[tuple[str, str]]:
    return [(url, f"g{g}/{i}.csv") for g, urls in dataset.urls(base_url) for i, url in enumerate(urls)]


def _curl(pairs: Sequence[tuple[str, str]], out: str, workdir: str, concurrency: int) -> ChildRun:
    config = os.path.join(workdir, "curl-config.txt")
    with open(config, "w", encoding="utf-8") as handle:
        handle.writelines(f'url = "{url}"\noutput = "{os.path.join(out, rel)}"\n' for url, rel in pairs)
    argv = ["curl", "--parallel", "--parallel-max", str(concurrency), "--create-dirs", "--silent", "--show-error",
            "--fail", "--noproxy", "*", "-K", config]
    return run_child(argv).check()


def _aria2c(pairs: Sequence[tuple[str, str]], out: str, workdir: str, concurrency: int) -> ChildRun:
    listing = os.path.join(workdir, "aria2c-hc.txt")
    with open(listing, "w", encoding="utf-8") as handle:
        handle.writelines(f"{url}\n  out={rel}\n" for url, rel in pairs)
    argv = ["aria2c", "-i", listing, "-d", out, "-j", str(concurrency), "--quiet=true", "--summary-interval=0",
            "--auto-file-renaming=false", "--allow-overwrite=true", "--file-allocation=none", "--no-conf=true"]
    return run_child(argv).check()


def _check_copies(out: str, pairs: Sequence[tuple[str, str]], tool: str) -> None:
    missing = [rel for _, rel in pairs if not os.path.isfile(os.path.join(out, rel))]
    if missing:
        raise ScenarioFailed(f"{tool}: {len(missing)} files missing, e.g. {missing[0]}")


def run_high_concurrency(params: HighConcurrencyParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    dataset = DataSet("hc", tuple(group_sizes(params.groups, params.files)), params.file_bytes, pool=params.files)
    root = os.path.join(workdir, "origin")
    write_dataset(root, dataset)
    table = Table(
        title=f"High concurrency: {dataset.files:,} files of ~{params.file_bytes} B ({params.groups} groups), "
              "side by side in one run",
        columns=["tool", "c / latency ms", "wall s", "files/s", "% of bound", "CPU ms/file", "vs curl files/s",
                 "CPU vs curl"],
        command="python -m bench.run --only hc",
    )
    for concurrency, latency in params.cases:
        with start_origin(root, latency_s=latency, prefer=prefer_origin) as origin:
            if not table.notes:
                table.notes.append(f"origin: {origin.kind}")
            manifest = os.path.join(workdir, "hc.jsonl")
            write_manifest(manifest, dataset, origin.base_url)
            pairs = _pairs(dataset, origin.base_url)
            runs: dict[str, ChildRun] = {}
            out = os.path.join(workdir, "out-hc")
            shutil.rmtree(out, ignore_errors=True)
            runs["fanfetch run"] = run_fanfetch(manifest, out, concurrency=concurrency, allow_host=origin.host_port)
            verify_outputs(root, out, dataset)
            shutil.rmtree(out, ignore_errors=True)
            for tool, runner in (("curl --parallel", _curl), ("aria2c -j", _aria2c)):
                if shutil.which(tool.split()[0]) is None:
                    table.notes.append(f"{tool.split()[0]} not installed: row skipped")
                    continue
                runs[tool] = runner(pairs, out, workdir, concurrency)
                _check_copies(out, pairs, tool)
                shutil.rmtree(out, ignore_errors=True)
        _add_rows(table, dataset.files, concurrency, latency, runs)
    return table


def _add_rows(table: Table, files: int, concurrency: int, latency: float, runs: dict[str, ChildRun]) -> None:
    bound = concurrency / latency if latency else None
    curl = runs.get("curl --parallel")
    for tool, run in runs.items():
        rate, cpu_ms = files / run.wall_s, 1000 * run.cpu_s / files
        table.add(
            tool if tool != "aria2c -j" else f"aria2c -j {concurrency}", f"{concurrency} / {latency * 1000:.0f}",
            run.wall_s, rate, f"{100 * rate / bound:.0f} %" if bound else "—", f"{cpu_ms:.3f}",
            f"{rate / (files / curl.wall_s):.2f}×" if curl else None,
            f"{cpu_ms / (1000 * curl.cpu_s / files):.1f}×" if curl else None,
        )
    if bound:
        table.add("limit: concurrency / latency", f"{concurrency} / {latency * 1000:.0f}", files / bound, bound,
                  "100 %", None, None, None)
    ours = runs["fanfetch run"]
    if curl is not None and latency:
        ratio = curl.wall_s / ours.wall_s
        table.targets.append((f"c={concurrency}/{latency * 1000:.0f} ms: ≥ 0.8× curl's files/s ({ratio:.2f}×)",
                              ratio >= 0.8))
    if curl is not None and not latency:
        ratio = ours.cpu_s / curl.cpu_s
        table.targets.append((f"c={concurrency}, no latency: CPU per file ≤ 4× curl's ({ratio:.1f}×)", ratio <= 4))

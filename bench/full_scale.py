"""Scenario 6, full scale on this machine: the motivating job's shape (8,324 groups, 194,204 files of
~10 KB) behind 20 ms latency — ``fanfetch run`` wall time, files/s, peak RSS, and every byte checked."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

from bench.common import ScenarioFailed, Table, run_fanfetch
from bench.data import DataSet, group_sizes, verify_outputs, write_dataset, write_manifest
from bench.origin import start_origin

__all__ = ["FullScaleParams", "run_full_scale"]


@dataclass(frozen=True)
class FullScaleParams:
    groups: int = 8_324
    files: int = 194_204
    file_bytes: int = 10_000
    latency_s: float = 0.020
    concurrency: int = 64
    pool: int = 2_000  # distinct files on disk; every URL is still unique (query string)
    target_s: float = 300.0

    @classmethod
    def smoke(cls) -> FullScaleParams:
        return cls(groups=20, files=120, file_bytes=2_000, latency_s=0.002, concurrency=8, pool=50)


def run_full_scale(params: FullScaleParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    dataset = DataSet(
        "full", tuple(group_sizes(params.groups, params.files)), params.file_bytes, pool=params.pool
    )
    root = os.path.join(workdir, "origin-full")
    write_dataset(root, dataset)
    table = Table(
        title=f"Full scale: {params.groups:,} groups / {params.files:,} files "
        f"(~{params.file_bytes / 1000:.0f} KB), "
        f"{params.latency_s * 1000:.0f} ms per request, concurrency {params.concurrency}",
        columns=["run", "wall s", "files/s", "MB/s", "CPU ms/file", "peak RSS MiB", "groups ok", "files checked"],
        command="python -m bench.run --only full",
    )
    with start_origin(root, latency_s=params.latency_s, prefer=prefer_origin) as origin:
        table.notes.append(f"origin: {origin.kind}")
        manifest = os.path.join(workdir, "full.jsonl")
        write_manifest(manifest, dataset, origin.base_url)
        out = os.path.join(workdir, "out-full")
        shutil.rmtree(out, ignore_errors=True)
        run = run_fanfetch(manifest, out, concurrency=params.concurrency, allow_host=origin.host_port)
    checked = verify_outputs(root, out, dataset)
    results = _results(out)
    ok = sum(1 for r in results if r["status"] == "ok")
    if ok != params.groups or sum(int(r["files"]) for r in results) != params.files:
        raise ScenarioFailed(f"results: {ok} of {params.groups} groups ok")
    total_bytes = sum(int(r["bytes"]) for r in results)
    shutil.rmtree(out, ignore_errors=True)
    limit = params.concurrency / params.latency_s
    table.add(
        "fanfetch run",
        run.wall_s,
        params.files / run.wall_s,
        total_bytes / 1e6 / run.wall_s,
        f"{1000 * run.cpu_s / params.files:.3f}",  # user + system of the whole process (what plan's model takes)
        run.peak_rss_mib,
        f"{ok:,}",
        f"{checked:,}",
    )
    table.add("limit: concurrency / latency", params.files / limit, limit, None, None, None, None, None)
    table.targets.append(
        (f"≤ {params.target_s / 60:.0f} minutes ({run.wall_s:.0f} s)", run.wall_s <= params.target_s)
    )
    table.targets.append(
        ("nothing lost (every merged output checked byte for byte)", checked == params.files)
    )
    return table


def _results(out: str) -> list[dict[str, object]]:
    jobs = os.path.join(out, "_jobs")
    # beside ledger.sqlite and the output sidecars' _outputs/ (fanfetch's own names start with "_")
    (job,) = [name for name in os.listdir(jobs) if os.path.isdir(os.path.join(jobs, name)) and name[0] not in "_."]
    with open(os.path.join(jobs, job, "results.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]

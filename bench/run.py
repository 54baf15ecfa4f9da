"""Runs the benchmark scenarios and prints each as a side-by-side table (markdown), with the machine.

``python -m bench.run`` runs everything (about 5 minutes on 2 cores); ``--only small,large`` picks
scenarios; ``--smoke`` runs tiny versions in seconds (what CI runs); ``--out FILE`` also writes the tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import ScenarioFailed, Table, describe_machine
from bench.fleet import FleetParams, run_fleet_scenario
from bench.full_scale import FullScaleParams, run_full_scale
from bench.high_concurrency import HighConcurrencyParams, run_high_concurrency
from bench.large_files import LargeFilesParams, run_large_files
from bench.memory import MemoryParams, run_memory
from bench.million import MillionParams, run_million
from bench.producer import ProducerParams, run_producer
from bench.small_files import SmallFilesParams, run_small_files

__all__ = ["SCENARIOS", "OPT_IN", "run_scenarios", "main"]

# name -> (runner, params class); each params class has full defaults and a .smoke() constructor.
SCENARIOS: dict[str, tuple[Callable[..., Table], Any]] = {
    "small": (run_small_files, SmallFilesParams),
    "large": (run_large_files, LargeFilesParams),
    "memory": (run_memory, MemoryParams),
    "producer": (run_producer, ProducerParams),
    "full": (run_full_scale, FullScaleParams),
    "hc": (run_high_concurrency, HighConcurrencyParams),
}
# Run only when named (``--only fleet``): 600 groups × 12 containers, twice: ~10–15 minutes on 2 cores.
OPT_IN: dict[str, tuple[Callable[..., Table], Any]] = {
    "fleet": (run_fleet_scenario, FleetParams),
    # 1,000,000 groups: the whole-manifest load (~50 s, ~750 MB) beside the streamed run; ~4 minutes.
    "million": (run_million, MillionParams),
}


def run_scenarios(
    names: Sequence[str], *, smoke: bool, workdir: str, prefer_origin: str = "auto"
) -> list[Table]:
    tables = []
    for name in names:
        runner, params_cls = {**SCENARIOS, **OPT_IN}[name]
        params = params_cls.smoke() if smoke else params_cls()
        tables.append(runner(params, workdir=workdir, prefer_origin=prefer_origin))
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(SCENARIOS),
        help=f"comma-separated subset of {list(SCENARIOS)}, or the opt-in {list(OPT_IN)}",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: checks the scenarios run, measures nothing"
    )
    parser.add_argument(
        "--origin",
        choices=("auto", "nginx", "python"),
        default="auto",
        help="benchmark origin (auto: nginx when installed)",
    )
    parser.add_argument("--out", help="also write the tables (markdown) to this file")
    parser.add_argument("--workdir", help="scratch folder (default: a temp dir, removed afterwards)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS and n not in OPT_IN]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    machine = describe_machine()
    print(f"Machine: {machine.line()}\n", flush=True)
    sections = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="fanfetch-bench-", dir=args.workdir) as workdir:
        for name in names:
            started = time.monotonic()
            try:
                (table,) = run_scenarios([name], smoke=args.smoke, workdir=workdir, prefer_origin=args.origin)
            except ScenarioFailed as exc:
                print(f"### {name}: FAILED — {exc}\n", flush=True)
                failed = True
                continue
            table.notes.append(f"scenario took {time.monotonic() - started:.0f} s")
            text = table.markdown(machine)
            sections.append(text)
            print(text, flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(f"Machine: {machine.line()}\n\n" + "\n".join(sections))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

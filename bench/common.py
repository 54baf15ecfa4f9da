"""What every scenario shares: the machine description, side-by-side tables with ratios, and
running a child process while recording its wall time and peak RSS (``os.wait4``'s rusage)."""

from __future__ import annotations

import compileall
import functools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Machine",
    "describe_machine",
    "Table",
    "ChildRun",
    "run_child",
    "fanfetch_cmd",
    "ScenarioFailed",
    "format_rate",
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ScenarioFailed(RuntimeError):
    """A scenario's correctness check failed (a lost file, a wrong byte): its numbers mean nothing."""


@dataclass(frozen=True)
class Machine:
    cores: int
    ram_gib: float
    cpu: str
    python: str
    os: str

    def line(self) -> str:
        return f"{self.cores} cores, {self.ram_gib:.1f} GiB RAM, {self.cpu}; Python {self.python}; {self.os}"


def describe_machine() -> Machine:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram = 0.0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(
        cores=cores,
        ram_gib=ram,
        cpu=cpu,
        python=platform.python_version(),
        os=f"{platform.system()} {platform.release()}",
    )


@dataclass
class Table:
    """One scenario's result: rows side by side, the command that reproduces it, and notes."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""
    targets: list[tuple[str, bool]] = field(default_factory=list)  # (target, met?)

    def add(self, *row: object) -> None:
        self.rows.append(row)

    def markdown(self, machine: Machine | None = None) -> str:
        cells = [[_cell(c) for c in row] for row in self.rows]
        lines = [f"### {self.title}", ""]
        if self.command:
            lines += [f"`{self.command}`", ""]
        if machine is not None:
            lines += [f"Machine: {machine.line()}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        if self.targets:
            lines.append("")
            lines += [f"- target: {name} — **{'met' if ok else 'NOT met'}**" for name, ok in self.targets]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_rate(value: float) -> str:
    return f"{value:,.0f}"


@dataclass(frozen=True)
class ChildRun:
    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    cpu_s: float = 0.0  # user + system CPU of the child (rusage)

    def check(self) -> ChildRun:
        if self.returncode != 0:
            raise ScenarioFailed(
                f"{' '.join(self.argv[:4])}… exited {self.returncode}:\n"
                f"{self.stdout[-2000:]}\n{self.stderr[-2000:]}"
            )
        return self


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> ChildRun:
    """Run ``argv`` to completion; its own peak RSS comes from ``wait4`` (this child only, not siblings)."""
    merged_env = dict(os.environ)
    merged_env.update(env or {})
    out_path = os.path.join(_scratch(), f"child-{os.getpid()}-{time.monotonic_ns()}")
    with open(out_path + ".out", "w+b") as out, open(out_path + ".err", "w+b") as err:
        started = time.monotonic()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=merged_env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    os.unlink(out_path + ".out")
    os.unlink(out_path + ".err")
    return ChildRun(tuple(argv), proc.returncode, wall, usage.ru_maxrss / 1024, stdout, stderr,
                    cpu_s=usage.ru_utime + usage.ru_stime)


def _scratch() -> str:
    return os.environ.get("TMPDIR", "/tmp")


def fanfetch_cmd(*args: str) -> list[str]:
    """``fanfetch`` as a fresh process (the whole process is what a user waits for)."""
    _compile_fanfetch()
    return [sys.executable, "-m", "fanfetch.cli.main", *args]


@functools.cache
def _compile_fanfetch() -> None:
    """Byte-compile fanfetch once, as ``pip install`` does: a checkout under ``PYTHONDONTWRITEBYTECODE=1``
    (this machine's environment) never caches its bytecode, so every run would compile ~100 modules first
    (measured: ``import fanfetch.cli.main`` 0.33 s without .pyc files, 0.16–0.20 s with them)."""
    compileall.compile_dir(os.path.join(REPO, "fanfetch"), quiet=1)


def run_fanfetch(manifest: str, out: str, *, concurrency: int, allow_host: str) -> ChildRun:
    """``fanfetch run MANIFEST --out OUT`` against the bench origin, as every scenario runs it; fails loudly."""
    return run_child(fanfetch_cmd("run", manifest, "--out", out, "--concurrency", str(concurrency),
                                  "--allow-host", allow_host, "--quiet")).check()

"""Scenario: the local runner at a million groups (issue 11 point 5) — peak RSS and time to the first request.

A JSON Lines manifest of ``groups`` groups, one small file each, on a loopback nginx that logs each request's
time. Side by side in one run: loading the manifest whole (``load_job``, what ``fanfetch run`` did before),
the streamed check alone (``load_streamed_job``, pass 1), and ``fanfetch run`` itself; the run is interrupted
(SIGINT) ``run_s`` after its first request unless ``run_s`` is None, so it still streams every group (the rest
as not started) and writes a results manifest listing all of them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.common import ScenarioFailed, Table, fanfetch_cmd, run_child
from bench.origin import launch_nginx, stop_nginx

__all__ = ["MillionParams", "run_million"]

_NGINX = """\
{head}worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    log_format stamp '$msec';
    access_log {tmp}/access.log stamp buffer=64k flush=1s;
    keepalive_requests 1000000;
{temp_paths}    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "x\\n"; }}
    }}
}}
"""


@dataclass(frozen=True)
class MillionParams:
    groups: int = 1_000_000
    concurrency: int = 64
    run_s: float | None = 60.0  # downloading this long after the first request, then SIGINT (None: all groups)
    rss_budget_mib: float = 400.0
    first_request_budget_s: float = 10.0

    @classmethod
    def smoke(cls) -> MillionParams:
        return cls(groups=2_000, concurrency=16, run_s=None)


class _StampOrigin:
    """Answers every GET with 2 bytes and remembers when the first request came (epoch seconds)."""

    def __init__(self, prefer: str):
        self.kind = "nginx" if prefer != "python" and shutil.which("nginx") else "python"
        self._first: float | None = None
        if self.kind == "nginx":
            self._tmp, port, proc = launch_nginx(_NGINX, prefix="fanfetch-million-")
            self._proc: subprocess.Popen[Any] | None = proc
        else:
            origin = self

            class Handler(BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"

                def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                    pass

                def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                    if origin._first is None:
                        origin._first = time.time()
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"x\n")

            self._proc = None
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self._server.daemon_threads = True
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
            port = self._server.server_address[1]
        self.host_port = f"127.0.0.1:{port}"

    def first_request(self) -> float | None:
        if self.kind == "python":
            return self._first
        try:
            with open(os.path.join(self._tmp, "access.log"), "rb") as handle:
                line = handle.readline().strip()
        except OSError:
            return None
        return float(line) if line else None

    def stop(self) -> None:
        if self._proc is not None:
            stop_nginx(self._proc, self._tmp)
        else:
            self._server.shutdown()
            self._server.server_close()


def _write_manifest(path: str, groups: int, host_port: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, groups, 10_000):
            handle.write("".join(
                json.dumps({"group": f"g{i:07d}", "urls": [f"http://{host_port}/f/{i:07d}.bin"]}) + "\n"
                for i in range(start, min(start + 10_000, groups))))


_LOAD = """
import sys, time
from fanfetch.adapters.manifests import {fn}
from fanfetch.core.models import MergeMode
started = time.monotonic()
job = {fn}(sys.argv[1], default_merge=MergeMode.CONCAT)
size = job.group_count if hasattr(job, "group_count") else len(job.groups)
print(job.job_id, size, round(time.monotonic() - started, 2))
"""


def _load(fn: str, manifest: str) -> tuple[float, float, str, int]:
    """(seconds, peak RSS MiB, job id, groups) of loading ``manifest`` with ``fn`` in a fresh process."""
    run = run_child([sys.executable, "-c", _LOAD.format(fn=fn), manifest]).check()
    job_id, groups, seconds = run.stdout.split()
    return float(seconds), run.peak_rss_mib, job_id, int(groups)


def _run(manifest: str, out: str, origin: _StampOrigin, params: MillionParams) -> tuple[int, float, float, float, str]:
    """``fanfetch run``: (exit code, wall s, peak RSS MiB, first request s after start, stdout)."""
    argv = fanfetch_cmd("run", manifest, "--out", out, "--concurrency", str(params.concurrency),
                        "--allow-host", origin.host_port, "--quiet")
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started_wall, started = time.time(), time.monotonic()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
        if params.run_s is not None:
            def interrupt() -> None:
                while proc.poll() is None and origin.first_request() is None:
                    time.sleep(0.2)
                deadline = time.monotonic() + params.run_s
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)

            threading.Thread(target=interrupt, daemon=True).start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        text = stdout.read().decode(errors="replace") + stderr.read().decode(errors="replace")
    time.sleep(1.5)  # nginx flushes its log every second
    first = origin.first_request()
    if first is None:
        raise ScenarioFailed(f"the origin saw no request:\n{text[-2000:]}")
    return proc.returncode, wall, usage.ru_maxrss / 1024, first - started_wall, text


def _count_lines(path: str) -> int:
    count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def run_million(params: MillionParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    table = Table(
        title=f"A million groups: {params.groups:,} groups of one 2-byte file, local folder, "
              f"concurrency {params.concurrency}",
        columns=["what", "wall s", "peak RSS MiB", "first request s", "groups done"],
        command="python -m bench.run --only million",
    )
    origin = _StampOrigin(prefer_origin)
    manifest = os.path.join(workdir, "million.jsonl")
    out = os.path.join(workdir, "out-million")
    try:
        _write_manifest(manifest, params.groups, origin.host_port)
        whole_s, whole_rss, whole_id, whole_groups = _load("load_job", manifest)
        scan_s, scan_rss, scan_id, scan_groups = _load("load_streamed_job", manifest)
        if (whole_id, whole_groups) != (scan_id, scan_groups) or scan_groups != params.groups:
            raise ScenarioFailed(f"the loaders disagree: {whole_id}/{whole_groups} vs {scan_id}/{scan_groups}")
        code, wall, rss, first_s, text = _run(manifest, out, origin, params)
        results = os.path.join(out, "_jobs", scan_id, "results.jsonl")
        listed = _count_lines(results) if os.path.exists(results) else 0
        if listed != params.groups:
            raise ScenarioFailed(f"results manifest lists {listed:,} of {params.groups:,} groups:\n{text[-2000:]}")
        ok = _ok_groups(results)
        if params.run_s is None and (code != 0 or ok != params.groups):
            raise ScenarioFailed(f"exit {code}, {ok:,} of {params.groups:,} groups ok:\n{text[-2000:]}")
    finally:
        origin.stop()
        shutil.rmtree(out, ignore_errors=True)
        if os.path.exists(manifest):
            os.unlink(manifest)
    table.add("load_job: manifest loaded whole (the run's way before)", whole_s, whole_rss, None, None)
    table.add("load_streamed_job: the check alone (pass 1)", scan_s, scan_rss, None, None)
    stopped = f", SIGINT {params.run_s:.0f} s after the first request" if params.run_s is not None else ""
    table.add(f"fanfetch run{stopped}", wall, rss, first_s, ok)
    table.add("limit", None, params.rss_budget_mib, params.first_request_budget_s, params.groups)
    table.notes.append(f"origin: {origin.kind} (2-byte answers); the run's results manifest lists all "
                       f"{listed:,} groups ({params.groups - ok:,} not started)" if params.run_s is not None else
                       f"origin: {origin.kind} (2-byte answers); every group stored")
    table.targets.append((f"run peak RSS {rss:.0f} MiB ≤ {params.rss_budget_mib:.0f} MiB",
                          rss <= params.rss_budget_mib))
    table.targets.append((f"first request {first_s:.1f} s ≤ {params.first_request_budget_s:.0f} s",
                          first_s <= params.first_request_budget_s))
    return table


def _ok_groups(results: str) -> int:
    with open(results, "rb") as handle:
        return sum(1 for line in handle if b'"status": "ok"' in line)

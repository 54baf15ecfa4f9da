"""``fanfetch demo``: the motivating job at small scale, end to end, on this machine.

Starts the sample origin on 127.0.0.1, writes a job spec and its stations table into the output
folder (so the user sees exactly what ran), runs it like ``fanfetch run`` would, and checks the
merged files against what the origin serves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from rich.console import Console

from fanfetch.adapters.manifests import load_job
from fanfetch.cli.demo_origin import CSV_HEADER, DemoOrigin, Station, demo_stations, station_year_csv
from fanfetch.core.models import GroupResult, MergeMode
from fanfetch.core.units import plural

__all__ = ["run_demo", "write_demo_job", "expected_station_csv"]

_SPEC = """\
# The demo job: one merged CSV per station, made of that station's yearly CSVs.
[job]
url = "{url_template}"
group = "{{station_id}}"
key = "stations/{{station_id}}.csv"
merge = "csv"

[table]
path = "stations.csv"

[expand]
year = {{from = "first_year", to = "last_year"}}
"""


def write_demo_job(folder: str, stations: list[Station], url_template: str) -> str:
    """Write ``job.toml`` and ``stations.csv`` into ``folder``; return the spec's path."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "stations.csv"), "w", encoding="utf-8", newline="") as table:
        table.write("station_id,first_year,last_year\n")
        table.writelines(f"{s.station_id},{s.first_year},{s.last_year}\n" for s in stations)
    spec_path = os.path.join(folder, "job.toml")
    with open(spec_path, "w", encoding="utf-8") as spec:
        spec.write(_SPEC.format(url_template=url_template))
    return spec_path


def expected_station_csv(station: Station, versions: Mapping[tuple[int, int], int] | None = None) -> bytes:
    """What the merged file for ``station`` must hold: the header once, then every year's rows
    (``versions``: the origin's revised station-years, see ``DemoOrigin.revise``)."""
    header = CSV_HEADER.encode()
    revised = versions or {}
    body = b"".join(station_year_csv(station.station_id, y, revised.get((station.station_id, y), 0))[len(header):]
                    for y in range(station.first_year, station.last_year + 1))
    return header + body


def run_demo(*, out: str, stations: int, latency_s: float, concurrency: int, console: Console,
             quiet: bool = False, per_host_concurrency: int | None = None, per_host_rps: float | None = None,
             port: int | None = None) -> int:
    from fanfetch.cli.run import execute_job

    table = demo_stations(stations)
    with _start_origin(table, latency_s, port or DEMO_PORT) as origin:
        spec_path = write_demo_job(os.path.join(out, "_demo"), table, origin.url_template)
        job = load_job(spec_path, default_merge=MergeMode.CSV)
        console.print(
            f"demo: sample origin at http://{origin.host_port} ({latency_s * 1000:.0f} ms per request, "
            f"1 URL in 40 answers 503 once); job spec {spec_path}", highlight=False, markup=False)
        console.print(f"job {job.job_id}: {plural(len(job.groups), 'station')}, "
                      f"{plural(job.file_count, 'yearly CSV')} → {out}",
                      highlight=False, markup=False)
        stored: set[str] = set()  # an interrupted demo checks what it stored
        fetched: list[str] = []

        def note(result: GroupResult) -> None:
            if result.ok:
                stored.add(result.group_id)
                if not result.skipped:
                    fetched.append(result.group_id)

        summary = execute_job(job, dest=out, concurrency=concurrency, allow_hosts=[origin.host_port],
                              endpoint_url=None, console=console, quiet=quiet,
                              per_host_concurrency=per_host_concurrency, per_host_rps=per_host_rps,
                              on_result=note)
        requests = origin.total_requests
    wrong = [s.station_id for s in table if str(s.station_id) in stored
             and not _matches(os.path.join(out, "stations", f"{s.station_id}.csv"), expected_station_csv(s))]
    console.print(f"origin served {plural(requests, 'request')} ({requests - summary.files:,} of them retries); "
                  f"{plural(len(fetched), 'station')} fetched, {summary.skipped:,} already stored", highlight=False,
                  markup=False)
    if wrong:
        console.print(f"{len(wrong)} merged files differ from what the origin serves: {wrong[:5]}", style="red",
                      highlight=False, markup=False)
        return 1
    every = "all " if len(stored) == len(table) else ""
    verb = "is" if len(stored) == 1 else "are"
    console.print(f"checked: {every}{plural(len(stored), 'merged station file')} {verb} byte-exact. "
                  f"Look at {os.path.join(out, 'stations')}/ and {os.path.join(out, summary.results_key)}",
                  highlight=False, markup=False)
    return summary.exit_code


DEMO_PORT = 47831  # a fixed port keeps the URLs, and so the job id, the same from one demo run to the next


def _start_origin(table: list[Station], latency_s: float, port: int) -> DemoOrigin:
    """The sample origin on ``port``, or on any free port when that one is taken (the job id then differs)."""
    try:
        return DemoOrigin(table, latency_s=latency_s, flaky_one_in=40, port=port)
    except OSError:
        return DemoOrigin(table, latency_s=latency_s, flaky_one_in=40)


def _matches(path: str, expected: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read() == expected
    except OSError:
        return False

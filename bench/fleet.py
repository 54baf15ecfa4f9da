"""Scenario "fleet": N worker containers (separate processes) drain moto's SQS through the real worker handler,
as Lambda's event source mapping would, with the job ledger behind a DynamoDB that conflicts like AWS — side by
side with the same run on a conflict-free ledger.

Each function runs with exactly its synthesized template environment (``tests/template_env.py``), plus the
Lambda runtime's variables and the loopback endpoints; the worker also gets ``EMULATOR_WORKER_ENV`` (longer
bookkeeping timeouts for emulators that answer in seconds, see there). The origin (demo origin, own process)
answers 503 once for a deterministic few files and 404 for the years a few groups ask for but it does not have.
Every run is checked before its numbers count: every output byte-exact, every failure dead-lettered with its
reason, exactly one "Job Finished" (EventBridge rule → SQS) whose results manifest exists and lists every group
once.

``python -m bench.fleet`` (600 groups × 12 containers, both ledgers) or ``bench/run.sh --only fleet``;
``--groups/--containers/--modes`` for other sizes.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.common import ScenarioFailed, Table, describe_machine
from bench.fleet_deploy import Deployment, deploy, function_env, run_producer, start_container
from bench.fleet_services import Service
from fanfetch.cli.demo import expected_station_csv
from fanfetch.cli.demo_origin import Station
from tests.doubles.dynamodb_conflicts import ConflictStats, fetch_stats
from tests.template_env import SynthesizedStack, synthesize

__all__ = ["EMULATOR_WORKER_ENV", "FleetParams", "FleetRun", "run_fleet", "run_fleet_scenario", "main", "MODES"]

MODES = ("free", "conflicts")  # conflict-free peer first, then the ledger behind the conflict double
OUTPUT_PREFIX = "fleet/out"
MISSING_YEAR = 1800  # no station has it: the origin answers 404 (a permanent failure)
# The worker's bookkeeping clients default to 2 s connect / 5 s read (DynamoDB, SQS, S3 and EventBridge answer in
# milliseconds). Here they talk to emulators on a loaded 2-core machine: moto's one server, and a ledger double that
# runs one transaction at a time for 25 ms each, so 12 containers' verdicts queue for seconds. With the Lambda
# defaults those calls time out and whole batches come back (docs/performance.md §9); the bench gives its
# containers the general clients' timeouts and a reserve that holds one such attempt (5 + 30 s + the 7 s pause
# that may follow = 42 s, of the worker's 300 s), through the worker's own variables.
EMULATOR_WORKER_ENV = {"FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S": "5", "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S": "30",
                       "FANFETCH_DEADLINE_RESERVE_S": "45"}


@dataclass(frozen=True)
class FleetParams:
    groups: int = 600
    containers: int = 12
    max_years: int = 8  # files per group: 1..max_years station-years
    latency_ms: float = 20.0  # per origin request
    flaky_one_in: int = 40  # a file in this many answers 503 once (Retry-After: 0), then 200
    missing_every: int = 50  # every Nth group also asks for a year the origin does not have (404, permanent)
    hold_ms: float = 25.0  # how long a DynamoDB transaction holds its items (both ledgers take this time)
    # None: the worker's timeout (300 s), the least AWS accepts for an event source mapping, instead of the
    # template's 6× (30 min), so a returned batch comes back within a run; shorter values let a slow
    # invocation's messages reappear while it still works on them (duplicate deliveries)
    visibility_timeout_s: int | None = None
    give_up_s: float = 1200.0  # a container still running after this fails the run
    modes: tuple[str, ...] = MODES
    seed: int = 8324

    @classmethod
    def smoke(cls) -> FleetParams:
        return cls(groups=30, containers=3, max_years=3, latency_ms=0.0, flaky_one_in=10, missing_every=10,
                   visibility_timeout_s=20, give_up_s=90.0)


@dataclass
class FleetRun:
    """One drain of the whole job by the fleet, and what the checks found."""

    mode: str
    groups: int
    containers: int
    expected_failed: int
    producer_s: float = 0.0
    wall_s: float = 0.0
    invocations: int = 0
    failed_invocations: int = 0
    returned: int = 0
    errors: list[str] = field(default_factory=list)
    ledger: ConflictStats = field(default_factory=ConflictStats)
    problems: list[str] = field(default_factory=list)  # failed checks: the run's numbers mean nothing
    job_id: str = ""
    dead_lettered: int = 0
    duplicate_dead_letters: int = 0
    deliveries: int = 0  # records handed to the handler, all containers (> groups: redeliveries)
    finished_events: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def plan_stations(params: FleetParams) -> list[Station]:
    rng = random.Random(params.seed)
    stations = []
    for i in range(params.groups):
        span = rng.randint(1, params.max_years)
        first = rng.randint(1960, 2024 - span)
        stations.append(Station(station_id=1000 + 7 * i, first_year=first, last_year=first + span - 1))
    return stations


def _missing(params: FleetParams, index: int) -> bool:
    return params.missing_every > 0 and index % params.missing_every == params.missing_every - 1


def manifest_lines(params: FleetParams, stations: Sequence[Station], origin: str) -> list[dict[str, Any]]:
    """One csv group per station; every ``missing_every``-th also names a year the origin does not have."""
    url = origin + "/climate/bulk?format=csv&stationID={}&Year={}"
    lines = []
    for index, station in enumerate(stations):
        years = list(range(station.first_year, station.last_year + 1))
        if _missing(params, index):
            years.append(MISSING_YEAR)
        lines.append({"group": str(station.station_id), "key": f"stations/{station.station_id}.csv", "merge": "csv",
                      "urls": [url.format(station.station_id, year) for year in years]})
    return lines


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _clients(moto: str, dynamodb: str) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5})
    kwargs: dict[str, Any] = {"region_name": "us-east-1", "aws_access_key_id": "testing",
                              "aws_secret_access_key": "testing", "config": config}
    endpoints = {"s3": moto, "sqs": moto, "events": moto, "dynamodb": dynamodb}
    return {name: boto3.client(name, endpoint_url=url, **kwargs) for name, url in endpoints.items()}


def _drain_queue(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message in ``url`` (received and kept invisible for the rest of the run)."""
    messages: list[dict[str, Any]] = []
    empty = 0
    while empty < 2:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=600,
                                    MessageAttributeNames=["All"]).get("Messages", [])
        empty = 0 if batch else empty + 1
        messages += batch
    return messages


def check_run(run: FleetRun, params: FleetParams, stations: Sequence[Station], deployment: Deployment,
              clients: dict[str, Any]) -> None:
    """Append to ``run.problems`` everything the fleet got wrong."""
    s3, sqs, problems = clients["s3"], clients["sqs"], run.problems
    bucket = deployment.resources.bucket_name
    expected_failed = {str(s.station_id) for i, s in enumerate(stations) if _missing(params, i)}
    # every output byte-exact; no output for a failed group
    for station in stations:
        key = f"{OUTPUT_PREFIX}/stations/{station.station_id}.csv"
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            body = None
        if str(station.station_id) in expected_failed:
            if body is not None:
                problems.append(f"{key}: stored although a file of its group does not exist")
        elif body is None:
            problems.append(f"{key}: missing")
        elif body != expected_station_csv(station):
            problems.append(f"{key}: {len(body)} bytes differ from the expected {len(expected_station_csv(station))}")
    # failures dead-lettered, each once, with its reason in the message attributes
    dead = _drain_queue(sqs, deployment.resources.dead_letter_queue_url)
    run.dead_lettered = len(dead)
    groups_dead = [str(json.loads(m["Body"]).get("group")) for m in dead]
    run.duplicate_dead_letters = len(groups_dead) - len(set(groups_dead))  # at-least-once delivery allows these
    if set(groups_dead) != expected_failed:
        problems.append(f"dead-lettered {sorted(set(groups_dead))}, expected {sorted(expected_failed)}")
    for message in dead:
        reason = message.get("MessageAttributes", {}).get("fanfetch-error", {}).get("StringValue", "")
        if "404" not in reason:
            problems.append(f"dead letter {message['MessageId']} has no 404 reason: {reason!r}")
    # exactly one "Job Finished", whose results manifest exists and is complete
    finished = _drain_queue(sqs, deployment.finished_queue_url)
    run.finished_events = len(finished)
    if len(finished) != 1:
        problems.append(f"{len(finished)} Job Finished events, expected exactly 1")
    if not finished:
        return
    detail = json.loads(finished[0]["Body"])["detail"]
    if detail.get("job_id") != run.job_id:
        problems.append(f"Job Finished for {detail.get('job_id')}, expected {run.job_id}")
    if (detail.get("ok"), detail.get("failed")) != (len(stations) - len(expected_failed), len(expected_failed)):
        problems.append(f"Job Finished counts ok={detail.get('ok')} failed={detail.get('failed')}")
    location = str(detail.get("results_location", ""))
    results_bucket, _, results_key = location.removeprefix("s3://").partition("/")
    try:
        text = s3.get_object(Bucket=results_bucket, Key=results_key)["Body"].read().decode()
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the finding
        problems.append(f"results manifest {location!r} unreadable: {type(exc).__name__}: {exc}")
        return
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    listed = sorted(line["group"] for line in lines)
    if listed != sorted(str(s.station_id) for s in stations):
        problems.append(f"results manifest lists {len(listed)} groups ({len(set(listed))} distinct), "
                        f"expected {len(stations)}")
    wrong = [line["group"] for line in lines
             if (line["status"] == "failed") != (line["group"] in expected_failed)]
    if wrong:
        problems.append(f"results manifest has the wrong status for {wrong[:10]}")


def run_fleet(params: FleetParams, mode: str, stack: SynthesizedStack, origin_port: int, workdir: Path) -> FleetRun:
    """One whole job: services up, template deployed, producer, fleet drain, checks, services down."""
    stations = plan_stations(params)
    run = FleetRun(mode=mode, groups=params.groups, containers=params.containers,
                   expected_failed=sum(_missing(params, i) for i in range(params.groups)))
    workdir.mkdir(parents=True, exist_ok=True)
    stations_file = workdir / "stations.json"
    stations_file.write_text(json.dumps([[s.station_id, s.first_year, s.last_year] for s in stations]))
    services: list[Service] = []
    try:
        services.append(moto := Service("moto", log=workdir / "moto.log"))
        services.append(ddb := Service("dynamodb", "--mode", mode, "--hold-ms", str(params.hold_ms),
                                       log=workdir / "dynamodb.log"))
        services.append(origin := Service("origin", "--stations", str(stations_file), "--port", str(origin_port),
                                          "--latency-ms", str(params.latency_ms),
                                          "--flaky-one-in", str(params.flaky_one_in), log=workdir / "origin.log"))
        clients = _clients(moto.url, ddb.url)
        visibility = params.visibility_timeout_s or stack.queue_settings().worker_timeout_s
        deployment = deploy(stack, **clients, visibility_timeout_s=visibility)
        resources = deployment.resources
        manifest = "\n".join(json.dumps(line) for line in manifest_lines(params, stations, origin.url)) + "\n"
        clients["s3"].put_object(Bucket=resources.bucket_name, Key="manifests/fleet.jsonl", Body=manifest.encode())
        producer_env = function_env(stack, "Producer", resources, aws_endpoint=moto.url, dynamodb_endpoint=ddb.url)
        worker_env = function_env(stack, "Worker", resources, aws_endpoint=moto.url,
                                  dynamodb_endpoint=ddb.url) | EMULATOR_WORKER_ENV

        started = time.monotonic()
        produced = run_producer(stack, producer_env, {"manifest": f"s3://{resources.bucket_name}/manifests/fleet.jsonl"},
                                workdir)
        run.producer_s, run.job_id = time.monotonic() - started, str(produced["job_id"])
        before = fetch_stats(ddb.url)
        started = time.monotonic()
        containers = [start_container(stack, worker_env, resources.queue_url, workdir, f"c{i}",
                                      batch_size=deployment.batch_size, give_up_s=params.give_up_s)
                      for i in range(params.containers)]
        results = [c.result(timeout_s=params.give_up_s + 60) for c in containers]
        run.wall_s = time.monotonic() - started
        run.ledger = _minus(fetch_stats(ddb.url), before)
        for result in results:
            if result.get("error"):
                run.problems.append(f"container {result['container']}: {result['error']} (log {result['log']})")
            run.invocations += int(result.get("invocations", 0))
            run.failed_invocations += int(result.get("failed_invocations", 0))
            run.returned += int(result.get("returned", 0))
            run.deliveries += int(result.get("deleted", 0)) + int(result.get("returned", 0))
            run.errors += list(result.get("errors", []))
        if produced.get("groups") != params.groups:
            run.problems.append(f"producer enqueued {produced.get('groups')} groups, expected {params.groups}")
        check_run(run, params, stations, deployment, clients)
    finally:
        for service in reversed(services):
            service.stop()
    return run


def _minus(after: ConflictStats, before: ConflictStats) -> ConflictStats:
    names = [f for f in ConflictStats.__dataclass_fields__ if f != "hottest_items"]
    return replace(after, **{n: getattr(after, n) - getattr(before, n) for n in names})


def _item_label(item: str) -> str:
    """``table|{"pk": {"S": "JOB#1"}, "sk": {"S": "JOB"}}`` → ``JOB#1 / JOB`` (the double's item names)."""
    try:
        key = json.loads(item.split("|", 1)[1])
        return " / ".join(str(next(iter(v.values()))) for v in key.values())
    except (IndexError, ValueError, AttributeError, StopIteration):
        return item


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uptime unavailable"


def run_fleet_scenario(params: FleetParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    """Both ledgers side by side (``params.modes``); raises ScenarioFailed when a run's checks fail."""
    origin_port = _free_port()
    stack = synthesize({"outputPrefix": OUTPUT_PREFIX, "allowHosts": f"127.0.0.1:{origin_port}"})
    visibility = params.visibility_timeout_s or stack.queue_settings().worker_timeout_s
    load_before = _uptime()
    runs = [run_fleet(params, mode, stack, origin_port, Path(workdir) / f"fleet-{mode}") for mode in params.modes]
    table = Table(
        title=f"Fleet: {params.groups:,} groups × {params.containers} worker containers (processes) draining SQS "
              "through the worker handler",
        columns=["ledger", "wall s", "producer s", "invocations", "failed invocations", "deliveries",
                 "records returned", "ledger writes", "transactions (cancelled)", "plain writes (conflicted)",
                 "conflicts %", "dead-lettered", "Job Finished"],
        command=f"python -m bench.fleet --groups {params.groups} --containers {params.containers}",
    )
    for run in runs:
        label = "conflict double (AWS contention)" if run.mode == "conflicts" else "conflict-free (peer)"
        stats = run.ledger
        table.add(label, run.wall_s, run.producer_s, run.invocations, run.failed_invocations, run.deliveries,
                  run.returned,
                  stats.writes, f"{stats.transactions:,} ({stats.transactions_cancelled:,})",
                  f"{stats.plain_writes:,} ({stats.plain_write_conflicts:,})", f"{100 * stats.conflict_ratio:.1f}",
                  f"{run.dead_lettered} ({run.duplicate_dead_letters} twice)", run.finished_events)
    table.notes.append(f"load before: {load_before}; after: {_uptime()}")
    table.notes.append(f"origin: demo origin (own process), {params.latency_ms:g} ms per request, 1 file in "
                       f"{params.flaky_one_in} answers 503 once, every {params.missing_every}th group asks for a "
                       f"missing year (404); files per group 1–{params.max_years}; transaction hold "
                       f"{params.hold_ms:g} ms; visibility timeout {visibility} s; template "
                       f"environment per function, output prefix {OUTPUT_PREFIX!r}; worker also "
                       + ", ".join(f"{k}={v}" for k, v in EMULATOR_WORKER_ENV.items()))
    for run in runs:
        if run.ledger.hottest_items:
            hottest = ", ".join(f"{_item_label(item)} ×{n:,}" for item, n in run.ledger.hottest_items[:3])
            table.notes.append(f"{run.mode}: most-written ledger items {hottest}")
        if run.errors:
            table.notes.append(f"{run.mode}: failed invocations, first errors: {run.errors[:3]}")
    by_mode = {run.mode: run for run in runs}
    conflicted = by_mode.get("conflicts")
    if conflicted is not None:
        table.targets.append(("conflicts ≤ 5 % of ledger writes", conflicted.ledger.conflict_ratio <= 0.05))
        table.targets.append(("no invocation fails (bookkeeping)", conflicted.failed_invocations == 0))
    if conflicted is not None and "free" in by_mode:
        ratio = conflicted.wall_s / by_mode["free"].wall_s
        table.notes.append(f"wall ratio conflict double / conflict-free: {ratio:.2f}")
        table.targets.append((f"wall within 1.5× the conflict-free run ({ratio:.2f}×)", ratio <= 1.5))
    failed = [f"{run.mode}: {problem}" for run in runs for problem in run.problems]
    if failed:
        print(table.markdown(), flush=True)
        raise ScenarioFailed("fleet checks failed:\n" + "\n".join(failed[:30]))
    table.notes.append("checks passed in every run: outputs byte-exact, failures dead-lettered with their 404 "
                       "reason, exactly one Job Finished whose results manifest lists every group once")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    defaults = FleetParams()
    parser.add_argument("--groups", type=int, default=defaults.groups)
    parser.add_argument("--containers", type=int, default=defaults.containers)
    parser.add_argument("--max-years", type=int, default=defaults.max_years)
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms)
    parser.add_argument("--hold-ms", type=float, default=defaults.hold_ms)
    parser.add_argument("--visibility-timeout-s", type=int, default=None,
                        help="work queue visibility (default: the worker's timeout from the template, 300 s)")
    parser.add_argument("--modes", default=",".join(defaults.modes), help="free,conflicts (in this order)")
    parser.add_argument("--smoke", action="store_true", help="30 groups × 3 containers")
    parser.add_argument("--workdir", default=None, help="keep logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if any(m not in MODES for m in modes) or args.groups < 1 or args.containers < 1:
        parser.error(f"--modes takes {', '.join(MODES)}; --groups and --containers at least 1")
    params = FleetParams.smoke() if args.smoke else FleetParams(
        groups=args.groups, containers=args.containers, max_years=args.max_years, latency_ms=args.latency_ms,
        hold_ms=args.hold_ms, visibility_timeout_s=args.visibility_timeout_s)
    params = replace(params, modes=modes)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fanfetch-fleet-") as tmp:
        workdir = args.workdir or tmp
        print(f"Machine: {describe_machine().line()}; logs in {workdir}\n", flush=True)
        try:
            table = run_fleet_scenario(params, workdir=workdir)
        except ScenarioFailed as exc:
            print(f"fleet: FAILED — {exc}", file=sys.stderr)
            return 1
        print(table.markdown(describe_machine()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

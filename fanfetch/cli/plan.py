"""``fanfetch plan MANIFEST``: what a job will cost and how long it will take on SQS + Lambda, before
running it. The per-file time is given (``--per-file-s``) or measured on a few of the manifest's URLs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from fanfetch.cli.args import allow_host, endpoint_url, positive_float, positive_int
from fanfetch.core.costmodel import (
    CPU_PER_FILE_S,
    PRICES,
    RAMP_PER_MINUTE,
    RAMP_START,
    Plan,
    PlanInput,
    estimate,
)
from fanfetch.core.messages import encode_job
from fanfetch.core.models import Job, MergeMode, Source
from fanfetch.core.politeness import FleetBound, bound_fleet, worker_share_rps
from fanfetch.core.units import plural
from fanfetch.errors import FetchError, InputError

__all__ = ["add_plan_parser", "command_plan", "sample_downloads"]


def add_plan_parser(subparsers: Any) -> None:
    """Register ``plan`` on the ``fanfetch`` command's subparsers."""
    plan = subparsers.add_parser("plan", help="estimate Lambda invocations, cost and wall time of a job")
    plan.add_argument("manifest", help="JSON Lines, CSV or TOML job spec; a path or s3://bucket/key")
    timing = plan.add_mutually_exclusive_group(required=True)
    timing.add_argument(
        "--per-file-s",
        type=positive_float,
        metavar="S",
        help="seconds one download takes (latency included)",
    )
    timing.add_argument(
        "--sample",
        type=positive_int,
        metavar="N",
        help="measure the per-file time by downloading the manifest's first N URLs, one at a time",
    )
    plan.add_argument(
        "--concurrency",
        type=positive_int,
        default=50,
        help="maximum concurrent worker invocations (event source MaximumConcurrency; default 50)",
    )
    plan.add_argument(
        "--lambda-memory-mb", type=positive_int, default=1024, help="worker memory (default 1024)"
    )
    plan.add_argument(
        "--batch-size", type=positive_int, default=10, help="groups per invocation (default 10)"
    )
    plan.add_argument(
        "--files-in-flight",
        type=positive_int,
        default=16,
        help="downloads at once inside one invocation (FANFETCH_CONCURRENCY; default 16)",
    )
    plan.add_argument(
        "--cpu-per-file-ms",
        type=positive_float,
        default=CPU_PER_FILE_S * 1000,
        metavar="MS",
        help=f"CPU time one file costs a worker (default {CPU_PER_FILE_S * 1000:g}, measured: docs/performance.md §10)",
    )
    plan.add_argument(
        "--per-host-concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="requests in flight per host per worker (FANFETCH_PER_HOST_CONCURRENCY; default: no cap)",
    )
    plan.add_argument(
        "--per-host-rps",
        type=positive_float,
        default=None,
        metavar="R",
        help="requests per second per host per worker (FANFETCH_PER_HOST_RPS; default: no limit)",
    )
    plan.add_argument(
        "--fleet-per-host-rps",
        type=positive_float,
        default=None,
        metavar="R",
        help="requests per second per host for the whole fleet (-c fleetPerHostRps), shared among --concurrency "
             "invocations as the stack does",
    )
    plan.add_argument(
        "--allow-host",
        type=allow_host,
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="allow sampling this otherwise refused (private/loopback) host; repeatable",
    )
    plan.add_argument(
        "--endpoint-url",
        type=endpoint_url, default=os.environ.get("AWS_ENDPOINT_URL") or None,
        help="S3-compatible endpoint for an s3:// manifest",
    )
    plan.add_argument("--json", action="store_true", help="print the estimate as one JSON object")


def sample_downloads(sources: Sequence[Source], *, allow_hosts: Sequence[str]) -> tuple[list[float], list[FetchError]]:
    """Download ``sources`` one after another; the seconds of each that succeeded, and the failures (a 404 in
    the sample is reported, not a reason to stop)."""
    from fanfetch.bootstrap.fetching import build_fetcher

    fetcher = build_fetcher(concurrency=1, allow_hosts=tuple(allow_hosts))
    timed: list[float] = []
    failures: list[FetchError] = []
    try:
        for source in sources:
            started = time.monotonic()
            try:
                with tempfile.TemporaryFile() as sink:
                    fetcher.fetch(source, sink)
            except FetchError as exc:
                failures.append(exc)
                continue
            timed.append(time.monotonic() - started)
        return timed, failures
    finally:
        fetcher.close()


def command_plan(args: argparse.Namespace, console: Console) -> int:
    """Run ``fanfetch plan``; returns the exit code (0, or 1 when the sample could not be fetched).

    Raises InputError (exit 2 in ``main``) for a bad manifest.
    """
    from fanfetch.adapters.manifests import load_job
    from fanfetch.bootstrap.aws import aws_client
    from fanfetch.settings import allow_hosts_from_env

    job = load_job(
        args.manifest,
        default_merge=MergeMode.CONCAT,
        s3_client=lambda: aws_client("s3", endpoint_url=args.endpoint_url),
    )
    per_file_s = args.per_file_s
    measured = ""
    if per_file_s is None:
        sample = [s for g in job.groups for s in g.sources][: args.sample]
        allow = list(args.allow_host) + list(allow_hosts_from_env(os.environ))
        timed, failures = sample_downloads(sample, allow_hosts=allow)
        errors = Console(stderr=True, soft_wrap=True)
        for failure in failures[:10]:
            errors.print(f"fanfetch: sample: {failure}", highlight=False, markup=False)
        if not timed:
            errors.print(f"fanfetch: none of the {plural(len(sample), 'sampled URL')} could be downloaded",
                         highlight=False, markup=False)
            return 1
        per_file_s = sum(timed) / len(timed)
        measured = f"measured on {plural(len(timed), 'file')}" + (f", {len(failures):,} failed" if failures else "")
    plan = estimate(
        PlanInput(
            groups=len(job.groups),
            files=job.file_count,
            per_file_s=per_file_s,
            max_concurrency=args.concurrency,
            lambda_memory_mb=args.lambda_memory_mb,
            batch_size=args.batch_size,
            files_in_flight=args.files_in_flight,
            message_bytes=_mean_message_bytes(job),
            cpu_per_file_s=args.cpu_per_file_ms / 1000,
        )
    )
    fleet = bound_fleet(
        invocations=args.concurrency,
        files_in_flight=args.files_in_flight,
        per_host_concurrency=args.per_host_concurrency,
        per_host_rps=worker_rps(args),
    )
    busiest_host, busiest_files = _busiest_host(job)
    polite = args.per_host_concurrency is not None or fleet.rps is not None
    host_floor_s = _host_floor_s(fleet, busiest_files, per_file_s) if polite else None
    if host_floor_s is not None and host_floor_s > plan.wall_s:  # the one-host bound binds: it sets the pace
        plan = dataclasses.replace(plan, wall_s=host_floor_s)
    if args.json:
        record = {
            "job_id": job.job_id,
            "per_file_s": per_file_s,
            "per_file_source": measured or "given",
            "max_concurrency": args.concurrency,
            "lambda_memory_mb": args.lambda_memory_mb,
            "batch_size": args.batch_size,
            "files_in_flight": args.files_in_flight,
            "cpu_per_file_s": args.cpu_per_file_ms / 1000,
            "prices_as_of": PRICES.as_of,
            **plan.to_dict(),
            "cpu_bound": plan.cpu_bound,
            "per_host": {
                "per_worker_concurrency": args.per_host_concurrency,
                "per_worker_rps": worker_rps(args),
                "fleet_per_host_rps": args.fleet_per_host_rps,
                "busiest_host": busiest_host,
                "busiest_host_files": busiest_files,
                "busiest_host_min_wall_s": host_floor_s,
                "fleet_in_flight": fleet.in_flight,
                "fleet_rps": fleet.rps,
                "one_host_min_wall_s": fleet.min_wall_s(job.file_count),
            },
        }
        console.print_json(json.dumps(record))
        return 0
    _print_plan(plan, job, args, per_file_s, measured or "given", console, fleet,
                host=(busiest_host, busiest_files, host_floor_s))
    return 0


def worker_rps(args: argparse.Namespace) -> float | None:
    """The per-worker rate the stack would set: ``--per-host-rps``, or ``--fleet-per-host-rps`` shared among
    ``--concurrency`` invocations (the stricter when both are given), as ``StackSettings.worker_per_host_rps``."""
    return worker_share_rps(args.per_host_rps, args.fleet_per_host_rps, args.concurrency)


def _busiest_host(job: Job) -> tuple[str, int]:
    """The host most of the job's files come from, and how many."""
    counts: Counter[str] = Counter(urlsplit(s.url).netloc.lower() for g in job.groups for s in g.sources)
    return counts.most_common(1)[0] if counts else ("", 0)


def _pace_text(plan: Plan, args: argparse.Namespace, per_file_s: float) -> str:
    """One worker's files/s and what sets it: latency (files in flight / per-file time) or its CPU share."""
    cpu = (f"{plan.vcpus:.2f} vCPU at {args.lambda_memory_mb} MB / {args.cpu_per_file_ms:g} ms CPU per file"
           + (" (one process: 1 vCPU used)" if plan.vcpus > 1 else ""))
    latency = f"{args.files_in_flight} in flight / {per_file_s:.3f} s"
    if plan.cpu_bound:
        return (f"{plan.cpu_files_per_s:,.0f} files/s, bound by CPU: {cpu} "
                f"(latency alone would allow {plan.latency_files_per_s:,.0f}/s)")
    return (f"{plan.latency_files_per_s:,.1f} files/s, bound by latency: {latency} "
            f"(CPU allows {plan.cpu_files_per_s:,.0f}/s)")


def _host_floor_s(fleet: FleetBound, files: int, per_file_s: float) -> float | None:
    """Shortest time the busiest host's files can take: its rate bound, and its in-flight bound
    (``in_flight`` requests of ``per_file_s`` each at once)."""
    floors = [files * per_file_s / fleet.in_flight] if fleet.in_flight else []
    if fleet.rps is not None:
        floors.append(files / fleet.rps)
    return max(floors) if floors else None


def _mean_message_bytes(job: Job) -> int:
    if not job.groups:
        return 1
    try:
        bodies = encode_job(job.job_id, job.groups)
    except InputError:
        return 262_144  # a group too large for one message: enqueue will refuse it and say which
    return max(1, sum(len(b.encode()) for b in bodies) // len(bodies))


def _fleet_text(fleet: FleetBound, args: argparse.Namespace) -> str:
    """E.g. "≤ 200 requests in flight (50 invocations × 4), ≤ 250 requests/s (50 × 5/s)"."""
    per_worker = fleet.in_flight // max(1, fleet.invocations)
    text = f"≤ {fleet.in_flight:,} requests in flight ({fleet.invocations} invocations × {per_worker})"
    if fleet.rps is None:
        return text + ", no rate limit"
    share = f"{args.fleet_per_host_rps:g}/s fleet-wide ÷ {fleet.invocations} = " if args.fleet_per_host_rps else ""
    return text + f", ≤ {fleet.rps:,.4g} requests/s ({share}{fleet.invocations} × {worker_rps(args):.4g}/s)"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _print_plan(
    plan: Plan,
    job: Job,
    args: argparse.Namespace,
    per_file_s: float,
    source: str,
    console: Console,
    fleet: FleetBound,
    *,
    host: tuple[str, int, float | None],
) -> None:
    busiest_host, busiest_files, host_floor_s = host
    host_bound_binds = host_floor_s is not None and host_floor_s >= plan.wall_s
    table = Table(title=f"fanfetch plan — job {job.job_id}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("estimate", justify="right")
    rows = [
        ("groups / files / messages", f"{plan.groups:,} / {plan.files:,} / {plan.messages:,}"),
        ("per-file time", f"{per_file_s:.3f} s ({source})"),
        ("SendMessageBatch calls", f"{plan.send_calls:,}"),
        (
            "Lambda invocations",
            f"{plan.invocations:,} × {plan.invocation_s:.1f} s "
            f"(batch {args.batch_size}, {args.files_in_flight} files in flight)",
        ),
        ("per worker", _pace_text(plan, args, per_file_s)),
        ("GB-seconds", f"{plan.gb_seconds:,.0f} at {args.lambda_memory_mb} MB"),
        ("Lambda requests + duration", f"${plan.lambda_request_usd:.4f} + ${plan.lambda_duration_usd:.4f}"),
        ("SQS requests", f"{plan.sqs_requests:,} = ${plan.sqs_usd:.4f}"),
        ("S3 PUTs", f"{plan.s3_puts:,} = ${plan.s3_usd:.4f}"),
        ("total cost (no free tier)", f"${plan.total_usd:.2f}"),
        ("wall time", f"{_duration(plan.wall_s)} at ≤ {args.concurrency} concurrent invocations"
                      + (" (set by the per-host bound)" if host_bound_binds else "")),
        ("one file at a time would take", _duration(plan.serial_s)),
        ("load on one host, fleet-wide", _fleet_text(fleet, args)),
    ]
    if host_floor_s is not None:
        rows.append((f"busiest host {busiest_host}", f"{busiest_files:,} files: ≥ {_duration(host_floor_s)}"))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"Prices: us-east-1 list prices, x86, {PRICES.as_of}. Ramp: SQS event source starts with "
        f"{RAMP_START} concurrent batches and adds up to {RAMP_PER_MINUTE} per minute. "
        "Storage, data transfer and CloudWatch are not included.",
        highlight=False,
    )
    if plan.exceeds_timeout:
        console.print(
            f"[yellow]warning: an invocation would take {plan.invocation_s:.0f} s, more than the "
            "300 s worker timeout: lower --batch-size or raise --files-in-flight[/]"
        )

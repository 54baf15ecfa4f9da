"""What a job will cost and how long it will take on SQS + Lambda: a pure model, no I/O.

Used by ``fanfetch plan``. It models the SQS event source's scale-up (5 concurrent batches at first,
then up to 300 more per minute, up to the maximum concurrency) with a small event simulation, and each
worker's pace as the slower of latency (files in flight / per-file time) and CPU (its vCPU share / CPU per file).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

__all__ = [
    "Prices",
    "PRICES",
    "PlanInput",
    "Plan",
    "estimate",
    "simulate_ramp",
    "RAMP_START",
    "RAMP_PER_MINUTE",
    "SQS_REQUEST_CHUNK_BYTES",
    "CPU_PER_FILE_S",
    "MB_PER_VCPU",
    "vcpu_share",
]

# AWS Lambda scaling for SQS event sources (since Nov 2023; it was 60 per minute before):
# "starts with five concurrent batches ... adds up to 300 more instances per minute".
RAMP_START = 5
RAMP_PER_MINUTE = 300
SQS_REQUEST_CHUNK_BYTES = 65_536  # SQS bills each 64 KiB chunk of a request's payload as one request
# Lambda: "At 1,769 MB, a function has the equivalent of one vCPU" (docs.aws.amazon.com/lambda, "Configure Lambda
# function memory"); CPU is allocated in proportion to memory, up to 6 vCPUs at 10,240 MB.
MB_PER_VCPU = 1769
MAX_VCPUS = 6
# CPU time one small file costs a worker (HTTP on libcurl, hashing, merge, ledger): a whole `fanfetch run`
# process, user + system, per file — docs/performance.md section 6, `python -m bench.run --only full --origin nginx`
# (2026-12-03 15:44-15:50 UTC, three runs on a quiet machine after the per-file reference cycles went: 0.233 / 0.259 /
# 0.291 ms, the median here; 194,204 files of ~10 KB merged in groups of 23-24, 20 ms latency, c = 64), the shape of a
# worker's batch; on a 2-core Xeon (expect more on a slower vCPU). Earlier: 0.317 ms (14:23-14:37 UTC), 0.424 ms
# (12:14 UTC), 0.46-0.58 ms with a thread per file.
CPU_PER_FILE_S = 0.000259
# One worker is one Python process: its per-file work holds the GIL (a run's CPU time equals its wall
# time once CPU-bound, docs/performance.md section 10), so it uses at most one vCPU, however many it has.
_USABLE_VCPUS = 1.0


def vcpu_share(memory_mb: int) -> float:
    """vCPUs a Lambda function gets at ``memory_mb`` (1,769 MB = 1 vCPU, proportional, at most 6)."""
    return min(memory_mb / MB_PER_VCPU, MAX_VCPUS)


@dataclass(frozen=True)
class Prices:
    """US East (N. Virginia) list prices in USD, without any free tier."""

    as_of: str = "2025-06 (aws.amazon.com/lambda|sqs|s3/pricing; unchanged since 2020)"
    lambda_per_request: float = 0.20 / 1_000_000
    lambda_per_gb_s_x86: float = 0.0000166667  # first 6 billion GB-s a month
    sqs_per_request: float = 0.40 / 1_000_000  # standard queue, per 64 KiB chunk
    s3_per_put: float = 0.005 / 1_000  # S3 Standard PUT/COPY/POST/LIST


PRICES = Prices()


@dataclass(frozen=True)
class PlanInput:
    """A job's shape and the deployment's knobs; each unit in the name."""

    groups: int
    files: int
    per_file_s: float  # one download's time, latency included (measured or given)
    max_concurrency: int = 50  # the event source's MaximumConcurrency (stack default)
    lambda_memory_mb: int = 1024
    batch_size: int = 10  # SQS messages (groups) per invocation
    files_in_flight: int = 16  # downloads at once inside one invocation (FANFETCH_CONCURRENCY)
    invoke_overhead_s: float = 0.05  # per invocation besides downloads: merge, PUT, bookkeeping
    message_bytes: int = 2_000  # average message size (counts 64 KiB SQS request chunks)
    lambda_timeout_s: int = 300
    cpu_per_file_s: float = CPU_PER_FILE_S  # CPU time one file costs a worker (measured: see CPU_PER_FILE_S)

    def __post_init__(self) -> None:
        if self.groups < 0 or self.files < 0:
            raise ValueError("groups and files must be >= 0")
        if self.per_file_s < 0 or self.invoke_overhead_s < 0 or self.cpu_per_file_s < 0:
            raise ValueError("per_file_s, invoke_overhead_s and cpu_per_file_s must be >= 0")
        for name in (
            "max_concurrency",
            "lambda_memory_mb",
            "batch_size",
            "files_in_flight",
            "message_bytes",
            "lambda_timeout_s",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass(frozen=True)
class Plan:
    """The estimate, with the counts it rests on."""

    groups: int
    files: int
    messages: int
    send_calls: int
    invocations: int
    invocation_s: float
    gb_seconds: float
    sqs_requests: int
    s3_puts: int
    lambda_request_usd: float
    lambda_duration_usd: float
    sqs_usd: float
    s3_usd: float
    wall_s: float
    serial_s: float
    exceeds_timeout: bool
    vcpus: float = 0.0  # the worker's vCPU share at its memory size
    latency_files_per_s: float = math.inf  # one worker's pace if only latency bound it
    cpu_files_per_s: float = math.inf  # one worker's pace if only its CPU share bound it

    @property
    def cpu_bound(self) -> bool:
        """The worker's CPU share, not the latency of its downloads, sets its pace."""
        return self.cpu_files_per_s < self.latency_files_per_s

    @property
    def total_usd(self) -> float:
        return self.lambda_request_usd + self.lambda_duration_usd + self.sqs_usd + self.s3_usd

    def to_dict(self) -> dict[str, object]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["total_usd"] = self.total_usd
        return fields


def estimate(job: PlanInput, prices: Prices = PRICES) -> Plan:
    """Counts, GB-seconds, cost and wall time of ``job`` when every invocation gets a full batch.

    One invocation downloads its batch's files ``files_in_flight`` at a time, so its duration is
    ``ceil(files per batch / files_in_flight) × per_file_s`` plus the overhead — unless its CPU share is
    the tighter bound: ``files per batch × cpu_per_file_s / vCPUs`` (a vCPU share below one at less than
    1,769 MB; at most one vCPU used by one Python process). It is billed for all of it (Lambda bills
    waiting on the network like computing).
    """
    messages = job.groups
    invocations = math.ceil(messages / job.batch_size) if messages else 0
    files_per_invocation = job.files / invocations if invocations else 0.0
    rounds = math.ceil(files_per_invocation / job.files_in_flight) if files_per_invocation else 0
    vcpus = vcpu_share(job.lambda_memory_mb)
    usable = min(vcpus, _USABLE_VCPUS)
    latency_rate = job.files_in_flight / job.per_file_s if job.per_file_s else math.inf
    cpu_rate = usable / job.cpu_per_file_s if job.cpu_per_file_s else math.inf
    download_s = max(rounds * job.per_file_s, files_per_invocation / cpu_rate)
    invocation_s = download_s + job.invoke_overhead_s
    gb_seconds = invocations * invocation_s * job.lambda_memory_mb / 1024
    send_calls = math.ceil(messages / 10)
    chunks_per_call = max(
        1, math.ceil(min(10, max(messages, 1)) * job.message_bytes / SQS_REQUEST_CHUNK_BYTES)
    )
    # Send + one receive and one delete-batch per invocation (empty polls of an idle queue are not counted).
    sqs_requests = send_calls * chunks_per_call + invocations * (chunks_per_call + 1)
    s3_puts = job.groups + 1  # one output per group (multipart adds a few per large output) + results
    return Plan(
        groups=job.groups,
        files=job.files,
        messages=messages,
        send_calls=send_calls,
        invocations=invocations,
        invocation_s=invocation_s,
        gb_seconds=gb_seconds,
        sqs_requests=sqs_requests,
        s3_puts=s3_puts,
        lambda_request_usd=invocations * prices.lambda_per_request,
        lambda_duration_usd=gb_seconds * prices.lambda_per_gb_s_x86,
        sqs_usd=sqs_requests * prices.sqs_per_request,
        s3_usd=s3_puts * prices.s3_per_put,
        wall_s=simulate_ramp(invocations, invocation_s, max_concurrency=job.max_concurrency),
        serial_s=job.files * job.per_file_s,
        exceeds_timeout=invocation_s > job.lambda_timeout_s,
        vcpus=vcpus,
        latency_files_per_s=latency_rate,
        cpu_files_per_s=cpu_rate,
    )


def simulate_ramp(
    invocations: int,
    invocation_s: float,
    *,
    max_concurrency: int,
    start: int = RAMP_START,
    per_minute: int = RAMP_PER_MINUTE,
) -> float:
    """Seconds until ``invocations`` batches of ``invocation_s`` each are done, when at most
    ``min(max_concurrency, start + per_minute × t / 60)`` run at once (a slot every 60/per_minute s)."""
    if invocations <= 0:
        return 0.0
    if max_concurrency < 1 or start < 1 or per_minute < 0:
        raise ValueError("max_concurrency and start must be >= 1, per_minute >= 0")
    if invocation_s <= 0:
        return 0.0
    step_s = 60 / per_minute if per_minute else math.inf
    running: list[float] = []  # end times
    now = 0.0
    pending = invocations
    end = 0.0
    while pending:
        slots = min(max_concurrency, start + (int(now / step_s + 1e-9) if step_s != math.inf else 0))
        while pending and len(running) < slots:
            heapq.heappush(running, now + invocation_s)
            end = max(end, now + invocation_s)
            pending -= 1
        if not pending:
            break
        next_end = running[0] if running else math.inf
        next_slot = (math.floor(now / step_s + 1e-9) + 1) * step_s if slots < max_concurrency else math.inf
        now = min(next_end, next_slot)
        while running and running[0] <= now + 1e-12:
            heapq.heappop(running)
    return end

"""Scenario 5, producer: enqueue many groups with ``SendMessageBatch`` (10 a call, several in flight)
through ``SqsQueue`` + ``enqueue_job`` vs one ``SendMessage`` per group, sequentially (the original producer),
against the stub SQS endpoint (``bench/sqs_stub.py``) with injected latency."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from bench.common import REPO, ScenarioFailed, Table

__all__ = ["ProducerParams", "run_producer"]

_QUEUE = "http://127.0.0.1/123456789012/bench"


@dataclass(frozen=True)
class ProducerParams:
    groups: int = 100_000
    urls_per_group: int = 23  # the motivating job averages 23.3 station-years per station
    latency_ms: float = 20.0
    calls_in_flight: tuple[int, ...] = (8, 16)  # 16 is FANFETCH_SEND_CALLS_IN_FLIGHT's default; 8 for comparison
    baseline_sample: int = 200  # sequential SendMessage calls timed, then extrapolated

    @classmethod
    def smoke(cls) -> ProducerParams:
        return cls(groups=200, urls_per_group=2, latency_ms=2.0, calls_in_flight=(4,), baseline_sample=10)


class _Stub:
    def __init__(self, latency_ms: float):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sqs_stub",
                "--port",
                str(self.port),
                "--latency-ms",
                str(latency_ms),
            ],
            cwd=REPO,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("SQS stub did not start")

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as response:  # noqa: S310 - loopback
            return dict(json.loads(response.read()))

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)


def _job(params: ProducerParams):  # type: ignore[no-untyped-def]
    from fanfetch.core.models import Group, Job, MergeMode, Source

    template = "https://climate.weather.gc.ca/climate_data/bulk_data_e.html?format=csv&stationID={}&Year={}"
    groups = tuple(
        Group(
            group_id=str(g),
            sources=tuple(Source(template.format(g, 1990 + y)) for y in range(params.urls_per_group)),
            key=f"stations/{g}.csv",
            merge=MergeMode.CSV,
        )
        for g in range(params.groups)
    )
    return Job(job_id="bench-producer", groups=groups)


def _client(endpoint: str):  # type: ignore[no-untyped-def]
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from fanfetch.bootstrap.aws import aws_client

    return aws_client("sqs", endpoint_url=endpoint)


def run_producer(params: ProducerParams, *, workdir: str, prefer_origin: str = "auto") -> Table:
    from fanfetch.adapters.sqs import SqsQueue
    from fanfetch.app.services import enqueue_job
    from fanfetch.core.messages import encode_job
    from fanfetch.settings import Settings

    job = _job(params)
    bodies = encode_job(job.job_id, job.groups)
    body_bytes = sum(len(b) for b in bodies) / len(bodies)
    table = Table(
        title=f"Producer: {params.groups:,} groups (messages of ~{body_bytes / 1024:.1f} KiB), "
        f"SQS stub with {params.latency_ms:g} ms per call",
        columns=["producer", "API calls", "wall s", "messages/s", "× baseline"],
        command="python -m bench.run --only producer",
    )
    stub = _Stub(params.latency_ms)
    try:
        client = _client(stub.url)
        # Baseline: what the original producer did — one SendMessage per group, one after another.
        client.send_message(QueueUrl=_QUEUE, MessageBody=bodies[0])  # warm the connection
        started = time.monotonic()
        for body in bodies[: params.baseline_sample]:
            client.send_message(QueueUrl=_QUEUE, MessageBody=body)
        baseline = params.baseline_sample / (time.monotonic() - started)
        runs = []
        for in_flight in params.calls_in_flight:
            before = stub.stats()
            queue = SqsQueue(client, _QUEUE, calls_in_flight=in_flight)
            started = time.monotonic()
            result = enqueue_job(job, queue)
            wall = time.monotonic() - started
            after = stub.stats()
            calls = after["calls"]["SendMessageBatch"] - before["calls"]["SendMessageBatch"]  # type: ignore[index]
            received = int(after["messages"]) - int(before["messages"])  # type: ignore[call-overload]
            if result.messages != params.groups or received != params.groups:
                raise ScenarioFailed(
                    f"sent {result.messages}, stub received {received}, expected {params.groups}"
                )
            runs.append((in_flight, calls, wall))
    finally:
        stub.stop()
    latency_s = params.latency_ms / 1000
    default = Settings().send_calls_in_flight  # FANFETCH_SEND_CALLS_IN_FLIGHT's default: what a user gets
    for in_flight, calls, wall in runs:
        ours = params.groups / wall
        table.add(
            f"fanfetch enqueue_job (SendMessageBatch, {in_flight} in flight"
            + (", the default)" if in_flight == default else ")"),
            calls,
            wall,
            ours,
            f"{ours / baseline:.0f}×",
        )
        table.targets.append(
            (
                f"{in_flight} in flight: ≤ {params.groups // 10 + 1:,} SendMessageBatch calls ({calls:,})",
                calls <= params.groups // 10 + 1,
            )
        )
        # The speed target is the default's; other settings are shown for comparison only.
        if in_flight == default or default not in params.calls_in_flight:
            table.targets.append(
                (
                    f"{in_flight} in flight: ≥ 100× the baseline's messages/s ({ours / baseline:.0f}×)",
                    ours >= 100 * baseline,
                )
            )
    table.add(
        "baseline: SendMessage, sequential (sampled)", params.groups, params.groups / baseline, baseline, "1×"
    )
    for in_flight, _, _ in runs:
        limit = in_flight * 10 / latency_s
        table.add(
            f"limit: {in_flight} calls in flight × 10 messages / latency",
            None,
            params.groups / limit,
            limit,
            f"{limit / baseline:.0f}×",
        )
    return table

"""Finishing a 200,000-group job from the DynamoDB ledger (behind the conflict double) in bounded memory: the
finishing worker's peak RSS, streaming results.jsonl (now) side by side with listing every group (before).

    .venv/bin/python -m bench.ledger_finish [--groups 200000] [--budget-mib 256] [--skip-listing]

A server process runs the conflict double (moto inside) and preloads the job: every group's verdict but the
last, with its counter shards. Then, each in its own process (its peak RSS is what is measured):
``finish`` records the last verdict through ``jobs.record_verdict`` — the real finishing step: the finish
claim, the announcement claim, results.jsonl streamed page by page to a local store, summary, event,
``announced_at``; ``listing`` writes the same manifest the way the ledger did before (every group, validators
included, in one list, rendered in memory). Exit 1 if the finishing step exceeds the budget or a line is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

from bench.common import REPO

JOB = "bench-200k"
TABLE = "fanfetch-ledger"
_T = "DynamoDB_20120810."
_VALIDATORS = 4  # per group (one per file): what a refresh run compares; never needed by the manifest


def _record(i: int, *, job: str = JOB) -> Any:
    from fanfetch.core.ledger import GroupRecord, Validator

    failed = i % 50 == 49
    return GroupRecord(
        job_id=job, group_id=f"station-{i:06d}", status="failed" if failed else "ok", key=f"stations/{i:06d}.csv",
        files=0 if failed else _VALIDATORS, bytes=0 if failed else 180_000 + i,
        sha256=None if failed else f"{i:064x}", attempts=5 if failed else 1,
        error="https://climate.example/bulk?stationID=… HTTP 404" if failed else None,
        started_at=1_700_000_000.0 + i / 10, finished_at=1_700_000_001.0 + i / 10,
        validators=() if failed else tuple(
            Validator(f"https://climate.example/bulk?format=csv&stationID={i}&Year={2000 + y}&timeframe=2",
                      etag=f'"{i:08x}-{y}"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
            for y in range(_VALIDATORS)),
    )


def _serve(groups: int) -> int:
    """Run the double, preload the job (all verdicts but the last), print its endpoint, wait for stdin to close."""
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
    from fanfetch.adapters.ledger_dynamodb_items import (
        create_ledger_table,
        group_item,
        shard_count,
        shard_of,
        shard_sk,
        shards_pk,
        share_of,
    )
    from tests.doubles.dynamodb_conflicts import ConflictingDynamoDB, DynamoDBConflictServer

    core = ConflictingDynamoDB(hold_s=0.025)
    server = DynamoDBConflictServer(core).start()
    client = server.client()
    create_ledger_table(client, TABLE)
    ids = [f"station-{i:06d}" for i in range(groups)]
    DynamoDBLedger(client, TABLE).open_job(JOB, total_groups=groups, total_files=_VALIDATORS * groups,
                                           results_location=f"s3://bench/_jobs/{JOB}/results.jsonl",
                                           now=1_700_000_000.0, group_ids=ids)
    shards = shard_count(groups)
    sums: dict[int, Counter[str]] = {k: Counter() for k in range(shards)}
    expected = Counter(shard_of(g, shards) for g in ids)
    started = time.monotonic()
    batch: list[dict[str, Any]] = []
    for i in range(groups - 1):  # the last verdict is the finishing worker's
        record = _record(i)
        k = shard_of(record.group_id, shards)
        sums[k].update(share_of(record))
        sums[k]["done"] += 1
        batch.append({"PutRequest": {"Item": group_item(record)}})
        if len(batch) == 25 or i == groups - 2:
            reply = core.handle(_T + "BatchWriteItem", json.dumps({"RequestItems": {TABLE: batch}}).encode())
            assert reply.status == 200 and not json.loads(reply.body).get("UnprocessedItems"), reply.body[:300]
            batch = []
    for k in range(shards):
        item = {"pk": {"S": shards_pk(JOB)}, "sk": {"S": shard_sk(k)}, "job_id": {"S": JOB}, "shard": {"N": str(k)},
                "expected": {"N": str(expected[k])},
                **{name: {"N": str(sums[k][name])} for name in
                   ("done", "ok", "failed", "files", "bytes", "changed", "unchanged")}}
        reply = core.handle(_T + "PutItem", json.dumps({"TableName": TABLE, "Item": item}).encode())
        assert reply.status == 200, reply.body[:300]
    print(f"endpoint {server.url} preloaded {groups - 1} verdicts in {time.monotonic() - started:.0f} s", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()
    os._exit(0)  # skip freeing millions of moto objects one by one


def _client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                        config=Config(retries={"mode": "standard", "max_attempts": 3}, read_timeout=300))


class _FileEvents:
    """JobEvents that writes the "Job Finished" detail to a file (what EventBridge would carry)."""

    def __init__(self, path: str):
        self.path = path

    def job_finished(self, job: Any, *, results_location: str) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(job.to_summary(results_location=results_location)) + "\n")


def _finish(url: str, groups: int, out: str) -> int:
    """The finishing worker: record the last verdict, which finishes, streams and announces the job."""
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
    from fanfetch.adapters.local_store import LocalStore
    from fanfetch.app.jobs import record_verdict

    ledger = DynamoDBLedger(_client(url), TABLE)
    started = time.monotonic()
    outcome = record_verdict(ledger, _record(groups - 1), store=LocalStore(out), events=_FileEvents(f"{out}/event"),
                             results_key=f"_jobs/{JOB}/results.jsonl", time_left_s=lambda: 900.0)
    seconds = time.monotonic() - started
    job = ledger.get_job(JOB)
    print(json.dumps({"finished": outcome.job_finished, "announced": job is not None and job.announced_at is not None,
                      "seconds": round(seconds, 1), "peak_rss_mib": _peak_rss_mib()}))
    return 0


def _listing(url: str, out: str) -> int:
    """The manifest written as before: every group (validators included) listed in memory, rendered at once."""
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
    from fanfetch.adapters.local_store import LocalStore
    from fanfetch.app.jobs import render_results

    ledger = DynamoDBLedger(_client(url), TABLE)
    started = time.monotonic()
    data = render_results(ledger.list_groups(JOB))
    LocalStore(out).put_bytes(f"_jobs/{JOB}/results-listed.jsonl", data)
    print(json.dumps({"seconds": round(time.monotonic() - started, 1), "peak_rss_mib": _peak_rss_mib()}))
    return 0


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.ledger_finish", *args], cwd=REPO, capture_output=True,
                          text=True, env=_env(), check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    fake = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": REPO}
    return dict(os.environ, **fake)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_finish", description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve", "finish", "listing"])
    parser.add_argument("--groups", type=int, default=200_000)
    parser.add_argument("--budget-mib", type=float, default=256.0)
    parser.add_argument("--skip-listing", action="store_true", help="do not run the before-side (saves minutes)")
    parser.add_argument("--url")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return _serve(args.groups)
    if args.mode == "finish":
        return _finish(args.url, args.groups, args.out)
    if args.mode == "listing":
        return _listing(args.url, args.out)

    server = subprocess.Popen([sys.executable, "-m", "bench.ledger_finish", "serve", "--groups", str(args.groups)],
                              cwd=REPO, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        if not ready or ready[0] != "endpoint":
            raise SystemExit("the ledger double did not start")
        url = ready[1]
        print(f"ledger double at {url}: {' '.join(ready[2:])}", flush=True)
        with tempfile.TemporaryDirectory() as out:
            finish = _child("finish", "--url", url, "--groups", str(args.groups), "--out", out)
            results = os.path.join(out, "_jobs", JOB, "results.jsonl")
            with open(results, "rb") as handle:
                lines = sum(1 for _ in handle)
            size_mib = os.path.getsize(results) / 2**20
            listing = None if args.skip_listing else _child("listing", "--url", url, "--out", out)
    finally:
        server.kill()  # its state is of no further use; tearing down ~2 GB of moto objects takes minutes
        server.wait(timeout=60)
    print(f"\nfinishing a job of {args.groups:,} groups (results.jsonl: {lines:,} lines, {size_mib:.1f} MiB)")
    print(f"{'':34}{'peak RSS MiB':>14}{'seconds':>10}")
    print(f"{'streamed (jobs.record_verdict)':34}{finish['peak_rss_mib']:>14}{finish['seconds']:>10}")
    if listing is not None:
        print(f"{'listed in memory (before)':34}{listing['peak_rss_mib']:>14}{listing['seconds']:>10}")
        print(f"ratio listed / streamed: {listing['peak_rss_mib'] / finish['peak_rss_mib']:.1f}x")
    ok = finish["finished"] and finish["announced"] and lines == args.groups
    ok = ok and finish["peak_rss_mib"] <= args.budget_mib
    print(f"budget {args.budget_mib:.0f} MiB: {'met' if ok else 'NOT met'}; finished once and announced: "
          f"{finish['finished'] and finish['announced']}; every group in results.jsonl: {lines == args.groups}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The fleet bench's loopback services, each its own process so none competes for the bench's GIL.

``python -m bench.fleet_services moto`` (moto's threaded server), ``origin --stations FILE --port P``
(the demo origin: 503 once for a deterministic few, 404 for years a station does not have) and
``dynamodb --mode conflicts|free`` (the ledger's DynamoDB: ``tests/doubles/dynamodb_conflicts.py``, or the
conflict-free peer below) each print ``endpoint http://127.0.0.1:PORT`` once serving and stop on SIGTERM.
``Service`` starts one from the bench and stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.doubles.dynamodb_conflicts import (
    TARGET_PREFIX,
    Backend,
    ConflictingDynamoDB,
    ConflictStats,
    DynamoDBConflictServer,
    InProcessMoto,
    Reply,
)

__all__ = ["ConflictFreeDynamoDB", "Service", "main"]

REPO = Path(__file__).resolve().parent.parent
_PLAIN_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})


class ConflictFreeDynamoDB:
    """The peer of the conflict double: the same serialised moto and the same time per transaction (and plain
    write), but no item is ever held against another writer — a ledger with no contention costs, so the fleet
    can show what contention adds. Counts the same requests (``conflicts`` stay 0)."""

    def __init__(self, backend: Backend | None = None, *, hold_s: float = 0.025, write_hold_s: float = 0.0,
                 hold: Any = time.sleep) -> None:
        self._backend = backend if backend is not None else InProcessMoto()
        self.hold_s, self.write_hold_s, self._hold = hold_s, write_hold_s, hold
        self._backend_lock = threading.Lock()  # moto is not thread-safe
        self._state = threading.Lock()
        self._counts: Counter[str] = Counter()

    def handle(self, target: str, body: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        operation = target.removeprefix(TARGET_PREFIX)
        with self._state:
            self._counts["requests"] += 1
            if operation == "TransactWriteItems":
                self._counts["transactions"] += 1
            elif operation == "TransactGetItems":
                self._counts["transact_gets"] += 1
            elif operation in _PLAIN_WRITES:
                self._counts["plain_writes"] += 1
            elif operation == "BatchWriteItem":
                request = json.loads(body or b"{}")
                self._counts["plain_writes"] += sum(len(v) for v in request.get("RequestItems", {}).values())
        with self._backend_lock:
            reply = self._backend.call(target, body, dict(headers or {}))
        # then the time the double's writes keep their items (after moto applied them), holding nothing here
        if operation == "TransactWriteItems":
            self._hold(self.hold_s)
        elif operation in _PLAIN_WRITES and self.write_hold_s:
            self._hold(self.write_hold_s)
        return reply

    def stats(self) -> ConflictStats:
        with self._state:
            counts = dict(self._counts)
        return ConflictStats(**{name: counts.get(name, 0) for name in (
            "requests", "transactions", "plain_writes", "transact_gets")})

    def reset_stats(self) -> None:
        with self._state:
            self._counts.clear()


class Service:
    """One service process: started, its endpoint read from its first line, stopped with SIGTERM."""

    def __init__(self, kind: str, *args: str, log: Path, env: Mapping[str, str] | None = None,
                 start_timeout_s: float = 60.0) -> None:
        self.kind, self.log = kind, log
        self._sink = log.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "bench.fleet_services", kind, *args], cwd=REPO,
                                        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=self._sink)
        assert self.process.stdout is not None
        deadline = time.monotonic() + start_timeout_s
        line = b""
        while time.monotonic() < deadline and not line.startswith(b"endpoint "):
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                break
        if not line.startswith(b"endpoint "):
            self.stop()
            raise RuntimeError(f"{kind} service did not start; log {log}:\n{log.read_text()[-2000:]}")
        self.url = line.split()[1].decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._sink.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve_until_sigterm(url: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"endpoint {url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def _moto(args: argparse.Namespace) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        _serve_until_sigterm(f"http://{host}:{port}")
    finally:
        server.stop()


def _origin(args: argparse.Namespace) -> None:
    from fanfetch.cli.demo_origin import DemoOrigin, Station

    stations = [Station(*row) for row in json.loads(Path(args.stations).read_text())]
    with DemoOrigin(stations, latency_s=args.latency_ms / 1000, flaky_one_in=args.flaky_one_in,
                    port=args.port) as origin:
        _serve_until_sigterm(f"http://{origin.host_port}")
        print(json.dumps({"requests": origin.total_requests}), file=sys.stderr, flush=True)


def _dynamodb(args: argparse.Namespace) -> None:
    make = ConflictingDynamoDB if args.mode == "conflicts" else ConflictFreeDynamoDB
    core = make(InProcessMoto(), hold_s=args.hold_ms / 1000, write_hold_s=args.write_hold_ms / 1000)
    server = DynamoDBConflictServer(core).start()  # type: ignore[arg-type]  # any core with handle/stats
    try:
        _serve_until_sigterm(server.url)
    finally:
        server.stop()
        print(json.dumps(core.stats().to_dict()), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_services", description=__doc__)
    sub = parser.add_subparsers(dest="kind", required=True)
    sub.add_parser("moto")
    origin = sub.add_parser("origin")
    origin.add_argument("--stations", required=True, help="JSON list of [station_id, first_year, last_year]")
    origin.add_argument("--port", type=int, default=0)
    origin.add_argument("--latency-ms", type=float, default=0.0)
    origin.add_argument("--flaky-one-in", type=int, default=0)
    dynamodb = sub.add_parser("dynamodb")
    dynamodb.add_argument("--mode", choices=("conflicts", "free"), required=True)
    dynamodb.add_argument("--hold-ms", type=float, default=25.0)
    dynamodb.add_argument("--write-hold-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    {"moto": _moto, "origin": _origin, "dynamodb": _dynamodb}[args.kind](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

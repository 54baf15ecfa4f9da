"""One Lambda execution environment as its own process: run with exactly the environment it was given.

``python -m bench.fleet_container produce --event FILE --out FILE`` invokes the producer handler once;
``python -m bench.fleet_container drain --queue-url URL --out FILE`` is a warm worker container fed by an
event source mapping stand-in (``tests/e2e/esm.py``) until the queue is empty. Neither reads a variable the
caller did not pass: the caller gives it the function's template environment plus the AWS endpoint and
credentials, nothing more. Results (the producer's answer, or the poller's counters) go to ``--out`` as JSON;
stdout carries the handler's own logs.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

__all__ = ["LambdaContext", "load_handler", "main"]


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as ``context``: the invocation's deadline runs on the real clock."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def load_handler(name: str) -> Any:
    """Import ``lambdas/<name>/handler.py`` as the runtime does (its own module; both files are handler.py)."""
    path = REPO / "lambdas" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"_fanfetch_{name}_handler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _context(args: argparse.Namespace, *, request_id: str = "produce-1") -> LambdaContext:
    return LambdaContext(function_name=args.function_name, memory_limit_in_mb=args.memory_mb,
                         timeout_s=args.timeout_s, aws_request_id=request_id)


def produce(args: argparse.Namespace) -> dict[str, Any]:
    event = json.loads(Path(args.event).read_text())
    return load_handler("producer").handler(event, _context(args))


def drain(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    from tests.e2e.esm import pump

    handler = load_handler("worker").handler
    sqs = boto3.client("sqs")
    requests = itertools.count(1)

    def invocation() -> LambdaContext:
        return _context(args, request_id=f"{args.name}-{next(requests)}")

    started = time.monotonic()
    stats = pump(sqs, args.queue_url, handler, invocation, timeout_s=args.give_up_s, batch_size=args.batch_size,
                 wait_time_s=args.wait_time_s)
    return {**stats, "container": args.name, "busy_s": round(time.monotonic() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_container", description=__doc__)
    parser.add_argument("mode", choices=("produce", "drain"))
    parser.add_argument("--out", required=True, help="where to write the result as JSON")
    parser.add_argument("--event", help="produce: the producer's event (a JSON file)")
    parser.add_argument("--queue-url", help="drain: the work queue (the event source mapping's, not the function's)")
    parser.add_argument("--name", default="c0", help="drain: this container's name (request ids, counters)")
    parser.add_argument("--function-name", default="fanfetch")
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="the function's timeout (per invocation)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--wait-time-s", type=int, default=1, help="drain: long polling per receive")
    parser.add_argument("--give-up-s", type=float, default=600.0, help="drain: stop (and fail) after this long")
    args = parser.parse_args(argv)
    try:
        result = produce(args) if args.mode == "produce" else drain(args)
        code = 0
    except Exception as exc:  # reported to the parent, which decides; the traceback goes to this log
        import traceback

        traceback.print_exc()
        result, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
    Path(args.out).write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    raise SystemExit(main())

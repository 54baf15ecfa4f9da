"""The ``fanfetch`` command: fan out downloads locally, plan, and operate a deployed stack.

The parser and the dispatch only: each command group (``run``, ``demo``, ``plan``, ``report``, and the
operations commands ``submit``, ``status``, ``failures``, ``redrive``, ``worker``) lives in its own module.
Exit codes: 0 every group stored, 1 some groups failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console

from fanfetch import __version__
from fanfetch.cli.args import (
    OneLineParser,
    allow_host,
    concurrency,
    destination,
    endpoint_url,
    latency_ms,
    merge_mode,
    port_number,
    positive_float,
    positive_int,
)
from fanfetch.cli.ops import OpsDeps, add_ops_parsers, run_ops_command
from fanfetch.cli.plan import add_plan_parser, command_plan
from fanfetch.cli.report import add_report_parser, command_report
from fanfetch.cli.run import command_run
from fanfetch.core.models import MergeMode
from fanfetch.errors import FanfetchError, InputError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=concurrency, default=32,
                        help="downloads in flight at once (default 32)")
    parser.add_argument("--allow-host", type=allow_host, action="append", default=[], metavar="HOST[:PORT]",
                        help="allow downloads from this otherwise refused (private/loopback) host; repeatable")
    parser.add_argument("--endpoint-url", type=endpoint_url, default=os.environ.get("AWS_ENDPOINT_URL") or None,
                        help="S3-compatible endpoint for s3:// destinations and manifests")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    _add_politeness_options(parser)


def _add_politeness_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-host-concurrency", type=positive_int, default=None, metavar="N",
                        help="at most N requests in flight to any one host (default: no cap)")
    parser.add_argument("--per-host-rps", type=positive_float, default=None, metavar="R",
                        help="at most R requests per second to any one host, slowing down further on 429/503 "
                             "(default: no limit)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fanfetch", description="Fan out many HTTP downloads, merge them per "
                                     "group, store them in a folder or S3; plan and operate the AWS deployment.")
    parser.add_argument("--version", action="version", version=f"fanfetch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a job on this machine (no AWS account needed)")
    run.add_argument("manifest", help="JSON Lines, CSV or TOML job spec; a path, - for stdin, or s3://bucket/key")
    run.add_argument("--out", type=destination, required=True, metavar="DEST", help="a local folder or s3://bucket/prefix")
    run.add_argument("--merge", type=merge_mode, default=MergeMode.CONCAT,
                     help="merge mode for groups that do not name one: csv, concat (default), none, csv-lenient")
    run.add_argument("--ledger", metavar="PATH", default=None,
                     help="SQLite job ledger (report timeline, refresh validators); default DEST/_jobs/ledger.sqlite "
                          "for a local DEST, none for s3:// unless given")
    run.add_argument("--on-missing", choices=("fail", "skip"), default="fail",
                     help="a 404/410 file: fail its group (default), or skip it, store the group from the rest and "
                          "name the missing URLs in the results (groups naming on_missing keep theirs)")
    run.add_argument("--refresh", action="store_true",
                     help="re-check groups already stored against the origin; rewrite only those that changed")
    _add_run_options(run)

    demo = commands.add_parser("demo", help="run a sample job against a built-in origin on 127.0.0.1")
    demo.add_argument("--out", default="fanfetch-demo-output", metavar="DIR",
                      help="where the merged station files go (default ./fanfetch-demo-output)")
    demo.add_argument("--stations", type=positive_int, default=200, help="number of stations (default 200)")
    demo.add_argument("--latency-ms", type=latency_ms, default=50, help="origin latency per request (default 50)")
    demo.add_argument("--concurrency", type=concurrency, default=32, help="downloads in flight (default 32)")
    demo.add_argument("--port", type=port_number, default=None,
                      help="the sample origin's port on 127.0.0.1 (default 47831: the same URLs, so the same job "
                           "id, every run)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    _add_politeness_options(demo)
    add_plan_parser(commands)
    add_report_parser(commands)
    add_ops_parsers(commands)
    return parser


def _command_demo(args: argparse.Namespace, console: Console) -> int:
    from fanfetch.cli.demo import run_demo

    return run_demo(out=args.out, stations=args.stations, latency_s=args.latency_ms / 1000,
                    concurrency=args.concurrency, console=console, quiet=args.quiet,
                    per_host_concurrency=args.per_host_concurrency, per_host_rps=args.per_host_rps, port=args.port)


def main(argv: Sequence[str] | None = None, *, console: Console | None = None, ops_deps: OpsDeps | None = None) -> int:
    """The ``fanfetch`` command. Tests pass a recording ``console`` and ``ops_deps`` (an in-process producer
    instead of Lambda's invoke, a worker without signal handlers) and otherwise run exactly this."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = console or Console(soft_wrap=True)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        code = run_ops_command(args, console, deps=ops_deps)
        if code is not None:
            return code
        if args.command == "plan":
            return command_plan(args, console)
        if args.command == "report":
            return command_report(args, console)
        if args.command == "run":
            return command_run(args, console)
        return _command_demo(args, console)
    except InputError as exc:  # one line per problem (a manifest may list up to 20)
        for line in str(exc).splitlines() or [""]:
            errors.print(f"fanfetch: error: {line}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_USAGE
    except FanfetchError as exc:  # an operation failed (AWS, ledger, store): say what, no traceback
        errors.print(f"fanfetch: {exc}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        errors.print("fanfetch: aborted", highlight=False)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback (unless asked)
        if os.environ.get("FANFETCH_DEBUG"):
            raise
        if _is_aws_setup_error(exc):  # no region, no credentials, no such profile: the environment, like a flag
            errors.print(f"fanfetch: error: AWS configuration: {exc}", highlight=False, markup=False)
            return EXIT_USAGE
        errors.print(f"fanfetch: {type(exc).__name__}: {exc} (FANFETCH_DEBUG=1 shows the traceback)",
                     highlight=False, markup=False, soft_wrap=True)
        return EXIT_FAILED


_AWS_SETUP_ERRORS = frozenset({"NoRegionError", "NoCredentialsError", "PartialCredentialsError", "ProfileNotFound",
                               "InvalidRegionError", "InvalidConfigError"})


def _is_aws_setup_error(exc: BaseException) -> bool:
    """botocore's configuration errors, by name: the CLI must start without importing botocore."""
    return type(exc).__module__.startswith("botocore") and type(exc).__name__ in _AWS_SETUP_ERRORS


if __name__ == "__main__":
    sys.exit(main())

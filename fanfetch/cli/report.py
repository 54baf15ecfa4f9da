"""``fanfetch report JOB``: write the job's self-contained HTML report (summary, throughput, failures).

Reads a local run (``DEST/_jobs/<job>/results.jsonl``, or the SQLite ledger beside it) or, with
``--stack``, the deployed stack's DynamoDB ledger; rendering is ``fanfetch.app.report``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console

from fanfetch.app.report import render_report
from fanfetch.bootstrap.destination import local_ledger_path, open_ledger_file
from fanfetch.cli.args import endpoint_url
from fanfetch.core.ledger import GroupRecord, JobRecord
from fanfetch.core.locations import parse_s3_uri
from fanfetch.errors import InputError, LedgerError, StoreError
from fanfetch.ports import Ledger

__all__ = ["add_report_parser", "command_report", "load_local_run", "load_from_ledger", "REPORT_NAME", "StackLedger"]

REPORT_NAME = "report.html"
StackLedger = Callable[[str, str | None], tuple[Ledger, str]]  # (stack name, endpoint) -> (ledger, where it is)
_RESULTS_NAME = "results.jsonl"


def add_report_parser(subparsers: Any) -> None:
    """Register ``report`` on the ``fanfetch`` command's subparsers."""
    report = subparsers.add_parser("report", help="write a job's HTML report (summary, throughput chart, failures)")
    report.add_argument("job", metavar="JOB", help="the job id (a unique prefix is enough for a local run)")
    where = report.add_mutually_exclusive_group(required=True)
    where.add_argument("--out-dir", metavar="DEST",
                       help="where a run wrote to (`fanfetch run --out`): a folder, or s3://bucket/prefix")
    where.add_argument("--stack", metavar="NAME", help="a deployed stack: read its job ledger (DynamoDB)")
    report.add_argument("--html", metavar="FILE",
                        help=f"where to write the page (default DEST/_jobs/JOB/{REPORT_NAME}, "
                             f"or ./fanfetch-report-JOB.html with --stack)")
    report.add_argument("--endpoint-url", type=endpoint_url, default=os.environ.get("AWS_ENDPOINT_URL") or None,
                        help="with --stack or an s3:// --out-dir: AWS-compatible endpoint (default: "
                             "AWS_ENDPOINT_URL, else AWS)")


def command_report(args: argparse.Namespace, console: Console, *, stack_ledger: StackLedger | None = None) -> int:
    """Run ``fanfetch report``; returns 0 once the page is written. Raises InputError (exit 2).

    ``stack_ledger`` builds the ledger of a stack (default: its DynamoDB table, found from the outputs).
    """
    if args.stack:
        ledger, where = (stack_ledger or _dynamodb_ledger_of_stack)(args.stack, args.endpoint_url)
        job, groups = load_from_ledger(ledger, args.job)
        source = where
        target = args.html or f"fanfetch-report-{job.job_id}.html"
    elif args.out_dir.startswith("s3://"):  # a run into S3: its results manifest, read into a temp folder
        with tempfile.TemporaryDirectory(prefix="fanfetch-report-") as scratch:
            job_dir = _fetch_s3_results(args.out_dir, args.job, scratch, endpoint_url=args.endpoint_url)
            job, groups, _ = load_local_run(job_dir)
        source = f"{args.out_dir.rstrip('/')}/_jobs/{job.job_id}/{_RESULTS_NAME}"
        target = args.html or f"fanfetch-report-{job.job_id}.html"
    else:
        ledger_path = local_ledger_path(args.out_dir)
        job_dir = _job_dir(args.out_dir, args.job, has_ledger=os.path.isfile(ledger_path))
        job, groups, source = load_local_run(job_dir, ledger_path=ledger_path)
        target = args.html or os.path.join(job_dir, REPORT_NAME)
    page = render_report(job, groups, generated_at=time.time(), source=source)
    _write_atomically(target, page)
    failed = f", {job.failed:,} failed" if job.failed else ""
    console.print(f"job {job.job_id}: {job.done:,}/{job.total_groups:,} groups{failed} → {target}",
                  highlight=False, markup=False)
    return 0


# --- local runs -----------------------------------------------------------------------------------


def _job_dir(dest: str, job: str, *, has_ledger: bool) -> str:
    """``DEST/_jobs/<job>``, accepting a unique prefix of the id; InputError naming the jobs there.

    With a ledger the folder may not exist yet (a run in progress writes its results at the end).
    """
    jobs_root = os.path.join(dest, "_jobs")
    exact = os.path.join(jobs_root, job)
    if os.path.isdir(exact):
        return exact
    try:
        known = sorted(n for n in os.listdir(jobs_root)
                       if not n.startswith(("_", ".")) and os.path.isdir(os.path.join(jobs_root, n)))
    except OSError:
        raise InputError(f"{dest}: no fanfetch runs here (no _jobs folder)") from None
    matches = [n for n in known if n.startswith(job)]
    if len(matches) == 1:
        return os.path.join(jobs_root, matches[0])
    if has_ledger and not matches:
        return exact
    listing = ", ".join(matches or known[:10]) or "none"
    problem = "matches several jobs" if matches else "is not a job here"
    raise InputError(f"{job!r} {problem} in {jobs_root} (jobs: {listing})")


def _fetch_s3_results(dest: str, job: str, folder: str, *, endpoint_url: str | None) -> str:
    """Copy ``DEST/_jobs/<job>/results.jsonl`` (a unique prefix of the id is enough) from S3 into
    ``folder/_jobs/<job>/``; return that job folder. InputError naming the jobs there."""
    from fanfetch.bootstrap.stack import build_s3_reader

    bucket, prefix = parse_s3_uri(dest)
    root = f"{prefix.rstrip('/')}/_jobs/" if prefix.strip("/") else "_jobs/"
    s3 = build_s3_reader(bucket, endpoint_url=endpoint_url)
    try:
        matches = s3.folders(root, job)
        if job in matches:
            matches = [job]
        if len(matches) != 1:
            problem = "matches several jobs" if matches else "is not a job here"
            listing = ", ".join((matches or s3.folders(root))[:10]) or "none"
            raise InputError(f"{job!r} {problem} in s3://{bucket}/{root} (jobs: {listing})")
        job_dir = os.path.join(folder, "_jobs", matches[0])
        os.makedirs(job_dir)
        s3.download(f"{root}{matches[0]}/{_RESULTS_NAME}", os.path.join(job_dir, _RESULTS_NAME))
    except StoreError as exc:
        raise InputError(f"cannot read s3://{bucket}/{root}{job}: {exc}") from None
    return job_dir


def load_local_run(job_dir: str, *, ledger_path: str | None = None) -> tuple[JobRecord, list[GroupRecord], str]:
    """The job's records from the SQLite ledger when it knows the job, else from results.jsonl.

    Returns (job, groups, where they were read). Raises InputError when neither is readable.
    """
    job_id = os.path.basename(os.path.normpath(job_dir))
    # Never create a ledger just to read it: only an existing file is opened.
    if ledger_path and os.path.isfile(ledger_path):
        try:
            ledger = open_ledger_file(ledger_path)
        except LedgerError as exc:
            raise InputError(f"{ledger_path}: cannot open the job ledger: {exc}") from None
        try:
            job, groups = load_from_ledger(ledger, job_id)
            return job, groups, ledger_path
        except InputError:
            pass  # this job ran before the ledger existed: its results manifest still tells the story
        finally:
            ledger.close()
    path = os.path.join(job_dir, _RESULTS_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            groups = [_group_from_line(job_id, line, f"{path}:{number}")
                      for number, line in enumerate(handle, start=1) if line.strip()]
    except FileNotFoundError:
        raise InputError(f"{path}: not found (the run may still be going, or was killed before the end)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    return _job_from_groups(job_id, groups, results_location=path), groups, path


def _group_from_line(job_id: str, line: str, where: str) -> GroupRecord:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("group"), str):
        raise InputError(f"{where}: not a results line (a JSON object with a \"group\" string)")
    try:
        return GroupRecord(
            job_id=job_id,
            group_id=doc["group"],
            status="ok" if doc.get("status") == "ok" else "failed",
            key=str(doc.get("key") or ""),
            files=int(doc.get("files") or 0),
            bytes=int(doc.get("bytes") or 0),
            sha256=doc.get("sha256"),
            # A skipped group fetched nothing; the report recognises it by attempts == 0.
            attempts=0 if doc.get("skipped") else int(doc.get("attempts") or 0),
            error=None if doc.get("error") is None else str(doc["error"]),
            started_at=float(doc.get("started_at") or 0.0),
            finished_at=float(doc.get("finished_at") or 0.0),
            change=doc.get("change"),
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: bad field value ({exc})") from None


def _job_from_groups(job_id: str, groups: list[GroupRecord], *, results_location: str) -> JobRecord:
    """A results manifest is written once, at the end of a run: every group in it is final."""
    ok = [g for g in groups if g.status == "ok"]
    fetched = [g for g in ok if g.attempts > 0]
    starts = [g.started_at for g in groups if g.started_at > 0] or [g.finished_at for g in groups if g.finished_at > 0]
    return JobRecord(
        job_id=job_id,
        total_groups=len(groups),
        total_files=sum(g.files for g in groups),
        ok=len(ok),
        failed=len(groups) - len(ok),
        files=sum(g.files for g in fetched),
        bytes=sum(g.bytes for g in fetched),
        changed=sum(1 for g in groups if g.change == "changed"),
        unchanged=sum(1 for g in groups if g.change == "unchanged"),
        started_at=min(starts, default=0.0),
        finished_at=max((g.finished_at for g in groups), default=0.0) or None,
        results_location=results_location,
    )


# --- ledgers (SQLite for local runs, DynamoDB for a stack) ----------------------------------------


def load_from_ledger(ledger: Ledger, job_id: str) -> tuple[JobRecord, list[GroupRecord]]:
    """The job and every recorded verdict; InputError when the ledger does not know the job."""
    try:
        job = ledger.get_job(job_id)
        if job is None:
            raise InputError(f"job {job_id!r} is not in the ledger")
        return job, ledger.list_groups(job_id)
    except LedgerError as exc:
        raise InputError(f"cannot read the job ledger: {exc}") from None


def _dynamodb_ledger_of_stack(stack: str, endpoint_url: str | None) -> tuple[Ledger, str]:
    """The stack's DynamoDB ledger, its table found from the stack's outputs."""
    from fanfetch.bootstrap.stack import build_stack_ledger, find_stack

    outputs = find_stack(stack, endpoint_url=endpoint_url)
    ledger = build_stack_ledger(outputs, endpoint_url)
    return ledger, f"stack {stack} (table {outputs.ledger_table})"


def _write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=".report-", suffix=".tmp",
                                         delete=False) as handle:
            handle.write(text)
        os.replace(handle.name, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the report: {exc.strerror or exc}") from None

"""Pre-flight: before the first download or message, check that the run can finish at all.

The destination accepts a write under the bookkeeping prefix (bucket exists, credentials and region
resolve), every host of the manifest passes the SSRF guard, the ledger opens. Every problem is named
on its own line in one ``PreflightFailed`` (an ``InputError``: exit 2, nothing downloaded or enqueued).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fanfetch.core.bookkeeping import job_dir_name
from fanfetch.core.manifest_stream import StreamedJob, hosts_of_groups
from fanfetch.core.models import Job
from fanfetch.errors import BlockedAddressError, FanfetchError, InputError
from fanfetch.ports import Ledger, ObjectStore
from fanfetch.settings import Settings

__all__ = ["PreflightFailed", "HostUse", "hosts_of", "check_hosts", "check_destination", "check_ledger",
           "run_preflight", "preflight_key", "preflight_producer"]

_LOOKUPS_IN_FLIGHT = 16


class PreflightFailed(InputError):
    """One or more pre-flight checks failed; ``str()`` has one line per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class HostUse:
    """A host and port the manifest downloads from, and the first group that does."""

    host: str
    port: int
    group_id: str

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def preflight_key(job_id: str) -> str:
    """The small object a pre-flight writes: beside the results manifest, under ``_jobs/<job>/``."""
    return f"_jobs/{job_dir_name(job_id)}/preflight.json"


def hosts_of(job: Job | StreamedJob) -> list[HostUse]:
    """Each distinct (host, port) of the job, in manifest order (a streamed job's, as its check found them)."""
    hosts = job.hosts if isinstance(job, StreamedJob) else hosts_of_groups(job.groups)
    return [HostUse(seen.host, seen.port, seen.group_id) for seen in hosts]


def check_hosts(job: Job | StreamedJob, resolve: Callable[[str, int], object], *,
                allow_hint: Callable[[HostUse], str]) -> list[str]:
    """A problem for each host the guard refuses. ``resolve(host, port)`` is ``AddressGuard.resolve``;
    names that do not resolve now are left to the download's own retries (DNS may heal), only a
    refusal by the guard is final. ``allow_hint`` says how to allow a host where this runs."""
    uses = hosts_of(job)

    def verdict(use: HostUse) -> str | None:
        try:
            resolve(use.host, use.port)
        except BlockedAddressError as exc:
            return (f"host {use.host_port} (group {use.group_id!r}, and every URL on it) is refused: {exc.reason}; "
                    f"{allow_hint(use)}")
        except FanfetchError:
            return None
        return None

    with ThreadPoolExecutor(max_workers=min(_LOOKUPS_IN_FLIGHT, max(len(uses), 1)),
                            thread_name_prefix="preflight") as pool:
        return [problem for problem in pool.map(verdict, uses) if problem]


def check_destination(store: ObjectStore, job: Job | StreamedJob, *, where: str, now: float) -> list[str]:
    """Write ``_jobs/<job>/preflight.json`` where the results will go: proves the bucket (or folder)
    exists and accepts writes with the credentials and region at hand."""
    groups = job.group_count if isinstance(job, StreamedJob) else len(job.groups)
    body = json.dumps({"job_id": job.job_id, "checked_at": now, "groups": groups}).encode()
    try:
        store.put_bytes(preflight_key(job.job_id), body, content_type="application/json")
    except FanfetchError as exc:
        return [f"destination {where} does not accept writes: {exc}"]
    except Exception as exc:  # noqa: BLE001 - botocore's setup errors (no credentials, region) end up here
        return [f"destination {where} does not accept writes: {type(exc).__name__}: {exc}"]
    return []


def check_ledger(ledger: Ledger | None, job: Job | StreamedJob, *, where: str) -> list[str]:
    """Read the job's record: proves the ledger (table, database file) opens and answers."""
    if ledger is None:
        return []
    try:
        ledger.get_job(job.job_id)
    except FanfetchError as exc:
        return [f"ledger {where} does not open: {exc}"]
    except Exception as exc:  # noqa: BLE001 - as above
        return [f"ledger {where} does not open: {type(exc).__name__}: {exc}"]
    return []


def run_preflight(checks: Iterable[Callable[[], list[str]]]) -> None:
    """Run every check (each returns its problems); raise PreflightFailed naming them all."""
    problems = [problem for check in checks for problem in check()]
    if problems:
        raise PreflightFailed(problems)


def preflight_producer(job: Job, settings: Settings, *, ledger: Ledger | None, store: ObjectStore | None,
                       resolve: Callable[[str, int], object], now: float) -> None:
    """The producer's pre-flight, before anything is enqueued: the workers' guard (``resolve``, with the stack's
    ``allowHosts``) lets every host through, the output bucket (``store``, None without a bucket) takes a write
    under the output prefix, the ledger table answers."""
    hint = "allow it with the stack's allowHosts context (-c allowHosts={}, FANFETCH_ALLOW_HOSTS)"
    where = f"s3://{settings.bucket_name}/{settings.output_key_prefix}"
    run_preflight([
        lambda: check_hosts(job, resolve, allow_hint=lambda use: hint.format(use.host_port)),
        lambda: check_destination(store, job, where=where, now=now) if store is not None else [],
        lambda: check_ledger(ledger, job, where=f"table {settings.ledger_table}"),
    ])

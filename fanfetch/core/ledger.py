"""The job ledger's records: what a job is up to, and each group's final verdict.

An SQS fan-out has no notion of a job; the ledger gives it one. Counting is exactly-once: the first final
verdict for a group counts, a duplicate's does not, except that a later "ok" replaces a "failed" once (an
upgrade: a redriven or re-run group that now succeeds), and exactly one ``record_group`` call sees
``job_finished`` turn true (that caller publishes "job finished"). Pure data; adapters implement ``Ledger``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["JobRecord", "GroupRecord", "Validator", "RecordOutcome"]


@dataclass(frozen=True)
class Validator:
    """What an origin said about one URL last time, for conditional requests next time."""

    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class JobRecord:
    """A job's progress. ``ok + failed == total_groups`` means finished."""

    job_id: str
    total_groups: int
    total_files: int
    ok: int = 0
    failed: int = 0
    files: int = 0
    bytes: int = 0
    changed: int = 0  # refresh runs: groups written because the origin changed (or stored for the first time)
    unchanged: int = 0  # incremental runs: groups found unchanged (nothing rewritten)
    started_at: float = 0.0  # epoch seconds
    finished_at: float | None = None  # set once, by the call that finished the job
    results_location: str = ""  # where the results manifest is (s3://… or a path)
    announced_at: float | None = None  # set once results, summary and "Job Finished" are all out

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def finished(self) -> bool:
        return self.total_groups > 0 and self.done >= self.total_groups

    def to_summary(self, *, results_location: str | None = None) -> dict[str, object]:
        """The JSON-able job summary: ``summary.json`` and the "Job Finished" event's detail."""
        finished_at = self.finished_at
        return {
            "job_id": self.job_id,
            "status": "finished" if finished_at is not None else "running",
            "total_groups": self.total_groups,
            "total_files": self.total_files,
            "ok": self.ok,
            "failed": self.failed,
            "files": self.files,
            "bytes": self.bytes,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "started_at": _iso(self.started_at),
            "finished_at": None if finished_at is None else _iso(finished_at),
            "duration_s": None if finished_at is None else round(max(0.0, finished_at - self.started_at), 3),
            "results_location": self.results_location if results_location is None else results_location,
        }


@dataclass(frozen=True)
class GroupRecord:
    """One group's final verdict in one job."""

    job_id: str
    group_id: str
    status: str  # "ok" | "failed"
    key: str
    files: int = 0
    bytes: int = 0
    sha256: str | None = None
    attempts: int = 0
    error: str | None = None
    started_at: float = 0.0  # epoch seconds
    finished_at: float = 0.0  # epoch seconds
    change: str | None = None  # incremental runs: "changed" | "unchanged"; None otherwise
    validators: tuple[Validator, ...] = ()
    missing: tuple[str, ...] = ()  # on_missing=skip: URLs left out because the origin answered 404/410


@dataclass(frozen=True)
class RecordOutcome:
    """What recording a verdict did: was it counted, did it finish the job, did it upgrade a failure.

    ``upgraded`` means an "ok" replaced the group's earlier "failed" (counted, too): the job's counters
    moved from failed to ok, ``remaining`` did not change, and a job already finished stays finished
    (its ``finished_at`` kept, ``job_finished`` not reported again) — only its results need rewriting.
    """

    counted: bool
    job_finished: bool
    job: JobRecord | None = None
    upgraded: bool = False
    # The job was finished earlier but never announced (its finisher died or gave up): whoever sees this
    # may claim the announcement (``Ledger.claim_announcement``) and complete it.
    announce_pending: bool = False


def _iso(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC, e.g. ``2024-05-01T03:00:00.000Z``."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

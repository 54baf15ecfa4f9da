"""The ports services talk through: small Protocols that adapters (and test fakes) implement.

Services take these as arguments; only ``fanfetch.bootstrap`` builds the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from fanfetch.core.ledger import GroupRecord, JobRecord, RecordOutcome, Validator
from fanfetch.core.models import FileResult, Job, MergeMode, Source
from fanfetch.errors import FanfetchError

__all__ = ["Fetcher", "ObjectStore", "StoredObject", "WorkQueue", "Clock", "Ledger", "JobEvents", "ManifestReader",
           "Invoker", "InvocationFailed", "InvocationOutcomeUnknown", "RedriveReport", "DeadLetterMover",
           "MessageSource"]


class Clock(Protocol):
    """Monotonic time and sleeping, injected so tests never sleep."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class Fetcher(Protocol):
    """Downloads one source into ``dest``, retrying transient failures itself.

    ``deadline`` is an absolute ``Clock.monotonic()`` value (or None): no attempt or backoff
    may run past it. On a retry ``dest`` is rewound and truncated, so it always ends holding
    exactly one complete body. With a ``validator`` (the URL's ETag / Last-Modified from an
    earlier run) the request is conditional: if the origin answers 304 the result has
    ``not_modified=True`` and ``bytes=0`` and nothing is written to ``dest``. With ``digest`` the
    result's ``sha256`` is the sha256 of exactly the bytes left in ``dest`` (those of the final,
    successful attempt), computed while downloading; None after a 304, or from a fetcher that
    cannot compute it (callers then hash ``dest`` themselves).
    Raises ``fanfetch.errors.FetchError`` subclasses only.
    """

    def fetch(
        self,
        source: Source,
        dest: BinaryIO,
        *,
        deadline: float | None = None,
        validator: Validator | None = None,
        digest: bool = False,
    ) -> FileResult: ...


@dataclass(frozen=True)
class StoredObject:
    """What a store knows about an object it holds."""

    key: str
    size: int
    sha256: str | None  # recorded at write time; None if the object was written by someone else
    fingerprint: str | None = None  # of the group definition that produced it (core.fingerprint); None: not ours
    version: str | None = None  # this very object (S3 ETag, local file identity), for a conditional replace


class ObjectStore(Protocol):
    """Where outputs go: a local folder or an S3 bucket (+ prefix). Writes are atomic."""

    def head(self, key: str) -> StoredObject | None:
        """The stored object at ``key``, or None when there is none."""
        ...

    def put_file(self, key: str, path: str, *, sha256: str, overwrite: bool = False, fingerprint: str | None = None,
                 replaces: str | None = None) -> StoredObject:
        """Store the file at ``path`` under ``key`` atomically (all or nothing), recording its sha256 and
        the ``fingerprint`` of the definition that produced it.

        By default the write is conditional: if ``key`` exists, ``OutputExists`` is raised and the stored
        object is left alone (duplicate deliveries). ``replaces=version`` replaces the object only while it
        is still that version (``StoredObject.version``; else ``OutputExists``): of two deliveries replacing
        a stale output only one writes. ``overwrite=True`` replaces unconditionally (refresh runs).
        Raises ``fanfetch.errors.StoreError`` subclasses.
        """
        ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream",
                  fingerprint: str | None = None) -> None:
        """Store a small object (results manifests, failure records, index markers) atomically."""
        ...


class WorkQueue(Protocol):
    """A queue that takes message bodies in batches (SQS, or an in-memory fake)."""

    def send_messages(self, bodies: Sequence[str]) -> int:
        """Send every body, batching and retrying as the queue requires; return how many were sent.

        Raises ``fanfetch.errors.FanfetchError`` if some could not be sent after retries.
        """
        ...


class Ledger(Protocol):
    """Jobs and their groups' final verdicts, counted exactly once (DynamoDB, SQLite, in-memory).

    Finishing a job is two facts: ``finished_at`` (every group has a verdict; set by exactly one
    ``record_group`` call) and ``announced_at`` (results, summary and "Job Finished" are out). Between them
    one caller at a time holds the announcement (``claim_announcement``); if it dies or gives up, a later
    delivery of any of the job's messages (``RecordOutcome.announce_pending``) or ``fanfetch finish`` takes over.
    """

    def open_job(self, job_id: str, *, total_groups: int, total_files: int, results_location: str,
                 now: float, group_ids: Sequence[str] | None = None) -> JobRecord:
        """Create the job if it is new (idempotent: a second call returns the existing record). ``group_ids``
        (optional) lets a sharded ledger know which verdicts each shard expects."""
        ...

    def record_group(self, record: GroupRecord) -> RecordOutcome:
        """Record a group's final verdict. Only the first verdict per (job, group) is counted, with one
        exception: an "ok" over a stored "failed" replaces it (``upgraded=True``, counted): failed -1, ok +1,
        files/bytes/changed/unchanged moved from the old verdict to the new, ``remaining`` unchanged, the
        output's validators stored. Concurrent upgrades of one group count once; ok over ok, failed over ok
        and failed over failed are not counted. Exactly one call per job ever returns ``job_finished=True``
        (an upgrade of a finished job keeps its ``finished_at`` and does not report it again). ``job`` is
        the job after this verdict when it finished the job, upgraded a group or finds it finished; else it
        may be None (a sharded ledger does not read the whole job for every verdict)."""
        ...

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def list_groups(self, job_id: str, *, status: str | None = None) -> list[GroupRecord]: ...

    def iter_groups(self, job_id: str, *, status: str | None = None) -> Iterator[GroupRecord]:
        """The groups in group id order, read page by page and without validators (bounded memory)."""
        ...

    def last_validators(self, key: str) -> tuple[str | None, tuple[Validator, ...]]:
        """For incremental runs: (sha256, validators) of the output last stored at ``key``."""
        ...

    def claim_announcement(self, job_id: str, *, now: float, lease_s: float) -> JobRecord | None:
        """The job, if it is finished, not announced and nobody else holds an unexpired claim: the caller
        now holds it until ``now + lease_s``. None otherwise."""
        ...

    def mark_announced(self, job_id: str, *, now: float) -> None:
        """Results, summary and event are out: set ``announced_at`` (and drop the claim)."""
        ...

    def release_announcement(self, job_id: str) -> None:
        """Give a claim back unannounced (finishing deferred or failed), so the next caller may take it."""
        ...


class JobEvents(Protocol):
    """Where "job finished" is announced (EventBridge for Lambda runs). A job may be announced more than
    once (a finisher that died after publishing): the event carries the job id as ``idempotency_key``."""

    def job_finished(self, job: JobRecord, *, results_location: str) -> None: ...


class ManifestReader(Protocol):
    """Reads a job's manifest, and the files a job spec names, where the producer finds them (S3).

    Both raise ManifestError naming the location when it cannot be read or parsed."""

    def load_job(self, location: str, *, default_merge: MergeMode, key_prefix: str,
                 max_spec_urls: int | None) -> Job: ...

    def read_bytes(self, location: str) -> bytes: ...


# --- operations on a deployed stack (fanfetch.app.ops): the producer invoked, dead letters moved back

_USER_ERROR_TYPES = frozenset({"InputError", "ManifestError", "ManifestProblems", "PreflightFailed"})


class Invoker(Protocol):
    """Runs a function synchronously, at most once, and returns its JSON result (Lambda ``RequestResponse``).

    Raises ``InvocationFailed`` when the function itself failed, ``InvocationOutcomeUnknown`` when no answer came.
    """

    def invoke(self, function_name: str, payload: Mapping[str, Any]) -> dict[str, Any]: ...


class InvocationFailed(FanfetchError):
    """The function ran and raised: ``error_type`` is the remote exception's class name."""

    def __init__(self, function_name: str, error_type: str, message: str):
        self.function_name = function_name
        self.error_type = error_type
        self.message = message
        super().__init__(f"{function_name}: {error_type}: {message}")

    @property
    def is_input_error(self) -> bool:
        """The function rejected our input (exit 2), as opposed to failing on its own (exit 1)."""
        return self.error_type in _USER_ERROR_TYPES


class InvocationOutcomeUnknown(FanfetchError):
    """The invoke request went out but no answer came back (read timeout, connection lost): the function
    may be running still. Never retried: a second invoke would run the producer, and enqueue the job, again."""

    def __init__(self, function_name: str, reason: str, waited_s: float | None, job_id: str | None = None):
        self.function_name, self.reason, self.waited_s, self.job_id = function_name, reason, waited_s, job_id
        waited = f" after {waited_s:,.0f} s" if waited_s is not None else ""
        follow = (f"follow job {job_id} with `fanfetch status {job_id} --stack NAME`" if job_id
                  else "check its logs")
        super().__init__(f"{function_name}: no answer{waited} ({reason}); it may still be running, so it is not "
                         f"invoked again (do not submit again): {follow}")


@dataclass(frozen=True)
class RedriveReport:
    """What a redrive did. ``method``: ``move-task`` (SQS moves the messages asynchronously; ``moved``
    is the DLQ depth when it started) or ``receive-send-delete`` (moved by us, ``moved`` exact)."""

    method: str
    moved: int
    failed: int = 0  # received but not sent (they stay in the DLQ and reappear there)
    not_deleted: int = 0  # sent but not deleted from the DLQ: now in both queues (outputs stay exactly-once)
    task_handle: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "moved": self.moved, "failed": self.failed,
                "not_deleted": self.not_deleted, "task_handle": self.task_handle}


class DeadLetterMover(Protocol):
    """Moves every message of a dead-letter queue back to its work queue."""

    def redrive(self, *, dlq_url: str, queue_url: str) -> RedriveReport: ...


class MessageSource(Protocol):
    """The queue a long-running worker receives its batches from (SQS message dicts: ``MessageId``,
    ``ReceiptHandle``, ``Body``, ``Attributes``). Calls raise QueueError (worth another try) or InputError (no
    queue)."""

    queue_url: str

    def visibility_timeout_s(self) -> int: ...

    def receive(self, count: int, *, wait_s: int) -> list[dict[str, Any]]: ...

    def delete(self, handles: Mapping[str, str]) -> tuple[int, list[str]]:
        """Delete the messages of ``handles`` (entry id → receipt handle): (deleted, ids of entries that failed)."""
        ...

    def change_visibility(self, handles: Mapping[str, str], seconds: int) -> tuple[int, list[tuple[str, str]]]:
        """Set the visibility of ``handles``' messages: (changed, (entry id, code) of entries that failed)."""
        ...

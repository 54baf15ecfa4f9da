"""The nouns of fanfetch: groups of URLs, jobs, per-file and per-group outcomes.

Pure data (frozen dataclasses, stdlib only) shared by the manifest parser, the message schema,
the services and both entry points.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

__all__ = ["MergeMode", "OnMissing", "Source", "Group", "Job", "FileResult", "GroupStatus", "GroupResult"]


class MergeMode(str, Enum):
    """How a group's downloaded files become its stored output(s)."""

    CSV = "csv"  # concatenate, keeping the first header and dropping repeated identical headers
    CONCAT = "concat"  # bytes in manifest order
    NONE = "none"  # no merge: each file stored under <key>/<filename>
    CSV_LENIENT = "csv-lenient"  # csv without the strict checks: text/html parts and differing headers kept as data

    @property
    def is_csv(self) -> bool:
        return self in (MergeMode.CSV, MergeMode.CSV_LENIENT)

    @classmethod
    def parse(cls, value: str) -> MergeMode:
        """Return the mode named ``value``; raise ValueError listing the valid names."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown merge mode {value!r} (expected one of: {names})") from None


class OnMissing(str, Enum):
    """What a 404/410 file does to its group."""

    FAIL = "fail"  # the group fails (the default: a missing file is an error)
    SKIP = "skip"  # the file is left out, the group stored from the rest and its results name the missing URLs

    @classmethod
    def parse(cls, value: str) -> OnMissing:
        """Return the policy named ``value``; raise ValueError listing the valid names."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown on_missing {value!r} (expected one of: fail, skip)") from None


@dataclass(frozen=True)
class Source:
    """One file to download, with optional integrity facts from the manifest."""

    url: str
    sha256: str | None = None  # lowercase hex, verified after download when present
    md5: str | None = None  # lowercase hex, verified after download when present
    size: int | None = None  # expected length in bytes, when known


@dataclass(frozen=True)
class Group:
    """A unit of work: one queue message, one output (or one folder of outputs for ``none``)."""

    group_id: str
    sources: tuple[Source, ...]
    key: str  # output key relative to the destination / OUTPUT_PREFIX; validated safe
    merge: MergeMode
    on_missing: OnMissing | None = None  # None: not given; the run's default applies (--on-missing, else fail)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self.sources)

    def with_default_on_missing(self, default: OnMissing) -> Group:
        """This group with ``on_missing`` filled in from the run's default when the manifest gave none."""
        return self if self.on_missing is not None else replace(self, on_missing=default)


@dataclass(frozen=True)
class Job:
    """A validated manifest: groups in manifest order, with unique ids and keys."""

    job_id: str
    groups: tuple[Group, ...]

    @property
    def file_count(self) -> int:
        return sum(len(g.sources) for g in self.groups)

    def with_default_on_missing(self, default: OnMissing) -> Job:
        """Every group's ``on_missing`` filled in from ``default`` where the manifest gave none."""
        return replace(self, groups=tuple(g.with_default_on_missing(default) for g in self.groups))


@dataclass(frozen=True)
class FileResult:
    """The outcome of downloading one source."""

    url: str
    bytes: int
    attempts: int
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False  # a conditional request answered 304: ``dest`` was not written
    sha256: str | None = None  # of the bytes left in ``dest``, when the fetch was asked for a digest
    content_type: str | None = None  # the origin's Content-Type for the stored body (None: not sent / 304)


class GroupStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class GroupResult:
    """The outcome of one group: stored (ok) or failed with a reason. One line of results.jsonl."""

    group_id: str
    status: GroupStatus
    key: str
    files: int = 0
    bytes: int = 0  # bytes of the stored output(s)
    sha256: str | None = None  # of the stored object (for ``none``: of the sorted per-file hashes)
    attempts: int = 0  # HTTP requests made for this group in this run (0 when skipped)
    error: str | None = None
    retryable: bool = False  # for failures: may a later attempt succeed?
    skipped: bool = False  # already stored by an earlier run / delivery; nothing fetched
    change: str | None = None  # refresh runs: "new" | "changed" | "unchanged"; None for plain runs
    started_at: float = 0.0  # epoch seconds (wall clock), for reports
    finished_at: float = 0.0  # epoch seconds (wall clock)
    missing: tuple[str, ...] = ()  # on_missing=skip: URLs left out because the origin answered 404/410
    started: bool = True  # False: the run stopped (or its deadline passed) before this group began; no request
    file_results: tuple[FileResult, ...] = field(default=(), compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status is GroupStatus.OK

    def to_record(self) -> dict[str, object]:
        """The JSON-able results-manifest line for this group."""
        return {
            "group": self.group_id,
            "status": self.status.value,
            "key": self.key,
            "files": self.files,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "attempts": self.attempts,
            "error": self.error,
            "skipped": self.skipped,
            "change": self.change,
            "started_at": round(self.started_at, 3),
            "finished_at": round(self.finished_at, 3),
        } | ({"missing": list(self.missing)} if self.missing else {})  # on_missing=skip left these out

"""In-memory fakes of the ports in ``fanfetch.ports``; tests assert on their state."""

from __future__ import annotations

import threading


class FakeClock:
    """A clock whose time moves only when someone sleeps (or a test calls ``advance``).

    ``sleeps`` records every requested sleep, so tests can assert on backoff without waiting.
    """

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeFetcher:
    """Serves bodies from a dict; a value that is an exception (or a list of them, then a body) is raised.

    ``calls`` counts fetches per URL; ``digests`` counts fetches asked for a sha256 (``digest=True``).
    """

    def __init__(self, bodies: dict[str, object], *, etags: dict[str, str] | None = None):
        self._plans = {url: list(v) if isinstance(v, list) else [v] for url, v in bodies.items()}
        self.calls: dict[str, int] = {}
        self.conditional: dict[str, int] = {}  # conditional requests per URL
        self.bytes_sent = 0
        self.etags = dict(etags or {})  # the origin's current ETag per URL (None: sends no validators)
        self.digests: dict[str, int] = {}
        self._lock = threading.Lock()

    def fetch(self, source, dest, *, deadline=None, validator=None, digest=False):
        import hashlib

        from fanfetch.core.models import FileResult

        etag = self.etags.get(source.url)
        with self._lock:
            self.calls[source.url] = self.calls.get(source.url, 0) + 1
            if digest:
                self.digests[source.url] = self.digests.get(source.url, 0) + 1
            if validator is not None:
                self.conditional[source.url] = self.conditional.get(source.url, 0) + 1
                if etag is not None and validator.etag == etag:
                    return FileResult(url=source.url, bytes=0, attempts=1, etag=etag, not_modified=True)
            plan = self._plans[source.url]
            step = plan.pop(0) if len(plan) > 1 else plan[0]
        if isinstance(step, BaseException):
            raise step
        dest.write(step)
        with self._lock:
            self.bytes_sent += len(step)
        sha256 = hashlib.sha256(step).hexdigest() if digest else None
        return FileResult(url=source.url, bytes=len(step), attempts=1, etag=etag, sha256=sha256)


class MemoryStore:
    """An ObjectStore in a dict: ``objects[key] = bytes``; ``puts`` counts writes per key. Like S3, each write
    gets a new version and records the sha256 and fingerprint it was given (``put_bytes``: its own sha256)."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.sha: dict[str, str] = {}
        self.fingerprints: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self.puts: dict[str, int] = {}
        self.fail_with: BaseException | None = None
        self._lock = threading.Lock()
        self._writes = 0

    def head(self, key):
        from fanfetch.ports import StoredObject

        with self._lock:
            if key not in self.objects:
                return None
            return StoredObject(key=key, size=len(self.objects[key]), sha256=self.sha.get(key),
                                fingerprint=self.fingerprints.get(key), version=self.versions.get(key))

    def _record(self, key, data, sha256, fingerprint):
        self._writes += 1
        self.objects[key] = data
        self.sha[key] = sha256
        self.versions[key] = f"v{self._writes}"
        if fingerprint is None:
            self.fingerprints.pop(key, None)
        else:
            self.fingerprints[key] = fingerprint
        self.puts[key] = self.puts.get(key, 0) + 1

    def put_file(self, key, path, *, sha256, overwrite=False, fingerprint=None, replaces=None):
        from fanfetch.errors import OutputExists
        from fanfetch.ports import StoredObject

        if self.fail_with is not None:
            raise self.fail_with
        with open(path, "rb") as handle:
            data = handle.read()
        with self._lock:
            if replaces is not None and not overwrite and self.versions.get(key) != replaces:
                raise OutputExists(f"{key!r} was changed by another writer")
            if replaces is None and not overwrite and key in self.objects:
                raise OutputExists(f"{key!r} is already stored")
            self._record(key, data, sha256, fingerprint)
        return StoredObject(key=key, size=len(data), sha256=sha256, fingerprint=fingerprint)

    def put_bytes(self, key, data, *, content_type="application/octet-stream", fingerprint=None):
        import hashlib

        with self._lock:
            self._record(key, bytes(data), hashlib.sha256(data).hexdigest(), fingerprint)


class MemoryQueue:
    """A WorkQueue that keeps what it was sent."""

    def __init__(self):
        self.bodies: list[str] = []

    def send_messages(self, bodies):
        self.bodies.extend(bodies)
        return len(bodies)


class MemoryLedger:
    """A Ledger in dicts with the adapters' semantics: first verdict counts (a later ok upgrades a failed
    one, once), exactly one call finishes a job."""

    def __init__(self):
        self.jobs: dict = {}  # job_id -> JobRecord
        self.groups: dict = {}  # (job_id, group_id) -> GroupRecord
        self.outputs: dict = {}  # key -> (sha256, validators)
        self.claims: dict = {}  # job_id -> the announcement claim's expiry
        self._lock = threading.Lock()

    def open_job(self, job_id, *, total_groups, total_files, results_location, now, group_ids=None):
        from fanfetch.core.ledger import JobRecord

        with self._lock:
            if job_id not in self.jobs:
                self.jobs[job_id] = JobRecord(job_id=job_id, total_groups=total_groups, total_files=total_files,
                                              started_at=now, results_location=results_location)
            return self.jobs[job_id]

    def record_group(self, record):
        import dataclasses

        from fanfetch.core.ledger import RecordOutcome
        from fanfetch.errors import JobNotOpen

        def moved(job, new, old):  # the job's counters with ``old``'s verdict (if any) taken out, ``new``'s put in
            def share(r):
                if r is None:
                    return (0,) * 6
                return (r.status == "ok", r.status != "ok", r.files, r.bytes, r.change in ("changed", "new"),
                        r.change == "unchanged")

            names = ("ok", "failed", "files", "bytes", "changed", "unchanged")
            return dataclasses.replace(job, **{n: getattr(job, n) + a - b
                                               for n, a, b in zip(names, share(new), share(old), strict=True)})

        with self._lock:
            job = self.jobs.get(record.job_id)
            if job is None:
                raise JobNotOpen(f"no job {record.job_id!r}")
            old = self.groups.get((record.job_id, record.group_id))
            counted = old is None
            upgraded = old is not None and old.status == "failed" and record.status == "ok"
            if counted or upgraded:
                self.groups[(record.job_id, record.group_id)] = record
                job = moved(job, record, old)
                if record.status == "ok":
                    self.outputs[record.key] = (record.sha256, record.validators)
            finished = job.finished and job.finished_at is None
            if finished:
                job = dataclasses.replace(job, finished_at=record.finished_at)
            self.jobs[record.job_id] = job
            pending = not finished and job.finished_at is not None and job.announced_at is None
            return RecordOutcome(counted=counted or upgraded, job_finished=finished, job=job, upgraded=upgraded,
                                 announce_pending=pending)

    def get_job(self, job_id):
        with self._lock:
            return self.jobs.get(job_id)

    def list_groups(self, job_id, *, status=None):
        with self._lock:
            return sorted((g for (j, _), g in self.groups.items() if j == job_id and status in (None, g.status)),
                          key=lambda g: g.group_id)

    def iter_groups(self, job_id, *, status=None):
        import dataclasses

        return iter([dataclasses.replace(g, validators=()) for g in self.list_groups(job_id, status=status)])

    def last_validators(self, key):
        with self._lock:
            return self.outputs.get(key, (None, ()))

    def claim_announcement(self, job_id, *, now, lease_s):
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.finished_at is None or job.announced_at is not None:
                return None
            if self.claims.get(job_id, float("-inf")) >= now:
                return None
            self.claims[job_id] = now + lease_s
            return job

    def mark_announced(self, job_id, *, now):
        import dataclasses

        with self._lock:
            self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], announced_at=now)
            self.claims.pop(job_id, None)

    def release_announcement(self, job_id):
        with self._lock:
            self.claims.pop(job_id, None)


class RecordingEvents:
    """JobEvents that keeps every announcement: ``finished`` = [(JobRecord, results_location)]."""

    def __init__(self, fail_with: BaseException | None = None):
        self.finished: list = []
        self.fail_with = fail_with

    def job_finished(self, job, *, results_location):
        if self.fail_with is not None:
            raise self.fail_with
        self.finished.append((job, results_location))

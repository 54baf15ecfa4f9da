"""Ledger records for report and throughput tests: groups finishing at offsets from ``T0``, and their job."""

from __future__ import annotations

from fanfetch.core.ledger import GroupRecord, JobRecord

T0 = 1_700_000_000.0


def group_record(group_id: str, finished_s: float | None, *, status: str = "ok", files: int = 2, size: int = 100,
                 attempts: int | None = None, error: str | None = None, started_s: float | None = None) -> GroupRecord:
    return GroupRecord(
        job_id="job", group_id=group_id, status=status, key=f"out/{group_id}.csv", files=files,
        bytes=size if status == "ok" else 0, attempts=files if attempts is None else attempts, error=error,
        started_at=0.0 if started_s is None else T0 + started_s,
        finished_at=0.0 if finished_s is None else T0 + finished_s,
    )


def job_record(groups: list[GroupRecord], *, total: int | None = None, started_s: float | None = 0.0) -> JobRecord:
    ok = [g for g in groups if g.status == "ok"]
    return JobRecord(job_id="job", total_groups=len(groups) if total is None else total,
                     total_files=sum(g.files for g in groups), ok=len(ok), failed=len(groups) - len(ok),
                     files=sum(g.files for g in ok), bytes=sum(g.bytes for g in ok),
                     started_at=0.0 if started_s is None else T0 + started_s)

"""A job's throughput over time, from its ledger records: groups bucketed by when they finished, in bucket
widths a reader takes in at a glance (1, 2, 5, 10 s …). Pure (stdlib only); ``fanfetch.app.report`` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fanfetch.core.ledger import GroupRecord

__all__ = ["MAX_BUCKETS", "Bucket", "Throughput", "bucket_throughput", "nice_bucket_s", "is_skipped"]

MAX_BUCKETS = 60  # bars in the chart: enough to show a ramp-up or a stall, few enough to read

# Bucket widths a reader can take in at a glance (seconds).
_NICE_BUCKETS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                   10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class Bucket:
    """What completed in ``[start_s, start_s + width)`` seconds after the chart's origin."""

    start_s: float
    files: int = 0  # files of groups stored (fetched) in this bucket
    bytes: int = 0
    ok: int = 0  # groups stored (skipped ones excluded: nothing was fetched)
    failed: int = 0


@dataclass(frozen=True)
class Throughput:
    """Completions per time bucket. ``origin`` is epoch seconds; ``untimed`` groups had no timestamp."""

    origin: float
    bucket_s: float
    buckets: tuple[Bucket, ...]
    untimed: int = 0
    earlier: int = 0  # groups last settled by an earlier run of the job (before its latest start): not charted

    @property
    def total_files(self) -> int:
        return sum(b.files for b in self.buckets)

    @property
    def span_s(self) -> float:
        return self.bucket_s * len(self.buckets)


def nice_bucket_s(span_s: float, *, max_buckets: int = MAX_BUCKETS) -> float:
    """The smallest readable bucket width that covers ``span_s`` in at most ``max_buckets`` buckets."""
    needed = span_s / max_buckets if span_s > 0 else 0.0
    for width in _NICE_BUCKETS_S:
        if width >= needed:
            return float(width)
    return float(math.ceil(needed / 86400) * 86400)


def is_skipped(group: GroupRecord) -> bool:
    # The ledger has no "skipped" flag: a group stored without a single request was already there.
    return group.status == "ok" and group.attempts == 0


def bucket_throughput(
    groups: Sequence[GroupRecord], *, started_at: float = 0.0, max_buckets: int = MAX_BUCKETS
) -> Throughput | None:
    """Bucket group completions by ``finished_at``; None when no group carries a timestamp.

    The origin is the earliest of ``started_at`` (the job's, when set) and every group's start and
    finish, so the first bar starts when the job did. Skipped groups (stored by an earlier run) add
    nothing: no file was fetched for them. A re-run job's ``started_at`` is its latest run's: groups
    whose verdict is from an earlier run (finished before it) are counted as ``earlier``, not charted.
    """
    stamped = [g for g in groups if g.finished_at > 0]
    timed = [g for g in stamped if started_at <= 0 or g.finished_at >= started_at] or stamped
    if not timed:
        return None
    starts = [g.started_at for g in timed if g.started_at > 0] + [g.finished_at for g in timed]
    if started_at > 0:
        starts.append(started_at)
    origin = min(starts)
    span = max(g.finished_at for g in timed) - origin
    width = nice_bucket_s(span, max_buckets=max_buckets)
    count = max(1, math.ceil(span / width))
    files, sizes, ok, failed = [0] * count, [0] * count, [0] * count, [0] * count
    for group in timed:
        index = min(int((group.finished_at - origin) // width), count - 1)
        if group.status == "ok":
            if is_skipped(group):
                continue
            ok[index] += 1
            files[index] += group.files
            sizes[index] += group.bytes
        else:
            failed[index] += 1
    buckets = tuple(
        Bucket(start_s=i * width, files=files[i], bytes=sizes[i], ok=ok[i], failed=failed[i]) for i in range(count)
    )
    return Throughput(origin=origin, bucket_s=width, buckets=buckets, untimed=len(groups) - len(stamped),
                      earlier=len(stamped) - len(timed))


# --- formatting -----------------------------------------------------------------------------------

"""Structured logs and CloudWatch metrics for each group a worker finishes (Powertools Logger + EMF Metrics).

Powertools is imported lazily: it ships in the Lambda asset and the ``lambda``/``dev`` extras, not
with the ``fanfetch`` CLI, and the stack reads the metric names below without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fanfetch.core.models import GroupResult

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics

__all__ = [
    "SERVICE",
    "DEFAULT_NAMESPACE",
    "NAMESPACE_ENV",
    "METRIC_UNITS",
    "make_logger",
    "make_metrics",
    "metrics_namespace",
    "group_fields",
    "log_group_result",
    "record_group_metrics",
]

SERVICE = "fanfetch"  # Powertools service: the "service" key of every log line and the metrics' dimension
DEFAULT_NAMESPACE = "fanfetch"
NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"

# Every metric a group result produces, with its CloudWatch unit (the dashboard graphs these names).
METRIC_UNITS: Mapping[str, str] = {
    "Files": "Count",  # files downloaded for groups stored in this delivery
    "Bytes": "Bytes",  # bytes of the outputs stored in this delivery
    "GroupsOk": "Count",  # groups stored, including ones found already stored
    "GroupsSkipped": "Count",  # groups found already stored: nothing fetched
    "GroupsFailed": "Count",
    "Retries": "Count",  # requests beyond one per file (attempts - files)
    "GroupDurationMs": "Milliseconds",  # wall time of one group, when known
}


def metrics_namespace(environ: Mapping[str, str] | None = None) -> str:
    """``POWERTOOLS_METRICS_NAMESPACE`` when set, else ``fanfetch``."""
    env = os.environ if environ is None else environ
    return env.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE


def make_logger(*, service: str = SERVICE, level: str | None = None) -> Logger:
    """A Powertools Logger writing one JSON object per line to stdout (level: ``POWERTOOLS_LOG_LEVEL``, INFO)."""
    from aws_lambda_powertools import Logger

    return Logger(service=service, level=level)


def make_metrics(*, namespace: str | None = None, service: str = SERVICE) -> Metrics:
    """Powertools Metrics (EMF on stdout at flush) in ``namespace`` or ``metrics_namespace()``.

    Powertools shares the metric set between instances; ``@metrics.log_metrics`` on the handler
    flushes it at the end of every invocation.
    """
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=namespace or metrics_namespace(), service=service)


def _duration_s(result: GroupResult, duration_s: float | None) -> float | None:
    if duration_s is not None:
        return max(duration_s, 0.0)
    if result.started_at > 0 and result.finished_at >= result.started_at:
        return result.finished_at - result.started_at
    return None


def _retries(result: GroupResult) -> int:
    # A skipped group made no request; otherwise each file needs one request and the rest were retries.
    return 0 if result.skipped else max(result.attempts - result.files, 0)


def group_fields(result: GroupResult, *, job_id: str, duration_s: float | None = None) -> dict[str, object]:
    """The structured fields logged for one group result."""
    duration = _duration_s(result, duration_s)
    return {
        "job_id": job_id,
        "group_id": result.group_id,
        "status": result.status.value,
        "key": result.key,
        "files": result.files,
        "bytes": result.bytes,
        "attempts": result.attempts,
        "retries": _retries(result),
        "skipped": result.skipped,
        "duration_ms": None if duration is None else round(duration * 1000),
        "error": result.error,
        "retryable": result.retryable if not result.ok else None,
    }


def log_group_result(
    logger: Logger,
    result: GroupResult,
    *,
    job_id: str,
    duration_s: float | None = None,
    extra: Mapping[str, object] | None = None,
) -> None:
    """One JSON log line per group: INFO when stored, WARNING when failed (the error and whether a retry may help).

    ``duration_s`` overrides the result's own ``finished_at - started_at``; ``extra`` adds fields
    (e.g. ``dead_lettered``, ``deliveries``).
    """
    fields = {**group_fields(result, job_id=job_id, duration_s=duration_s), **(extra or {})}
    if result.ok:
        logger.info("group already stored" if result.skipped else "group stored", extra=fields)
    else:
        logger.warning("group failed", extra=fields)


def record_group_metrics(metrics: Metrics, result: GroupResult, *, duration_s: float | None = None) -> None:
    """Add one group's metrics (see ``METRIC_UNITS``); they are emitted as EMF when ``metrics`` flushes.

    Counts are added as 0 or 1 on every group, so a Sum is a count and idle periods graph as 0.
    """
    fetched = result.ok and not result.skipped
    values: dict[str, float] = {
        "Files": result.files if fetched else 0,
        "Bytes": result.bytes if fetched else 0,
        "GroupsOk": 1 if result.ok else 0,
        "GroupsSkipped": 1 if result.skipped else 0,
        "GroupsFailed": 0 if result.ok else 1,
        "Retries": _retries(result),
    }
    duration = _duration_s(result, duration_s)
    if duration is not None and not result.skipped:
        values["GroupDurationMs"] = round(duration * 1000, 3)
    for name, value in values.items():
        metrics.add_metric(name=name, unit=METRIC_UNITS[name], value=value)

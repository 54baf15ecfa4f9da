"""Deployment settings read from CDK context (``cdk synth -c name=value`` or cdk.json), validated once.

Every bad value is reported in one ``ContextError`` naming each offending key, its value and what is allowed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields

from fanfetch.core.politeness import worker_share_rps

__all__ = [
    "LOG_RETENTION_DAYS_ALLOWED",
    "ContextError",
    "StackSettings",
]

# CloudWatch Logs accepts only these retention periods (days), see AWS::Logs::LogGroup RetentionInDays.
LOG_RETENTION_DAYS_ALLOWED: tuple[int, ...] = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

_SCHEDULE_RE = re.compile(r"^(rate|cron)\(.+\)$")
# host[:port] as the worker's FANFETCH_ALLOW_HOSTS takes it (fanfetch.settings.parse_allow_hosts)
_HOST_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_PREFIX_CHARS = 512


class ContextError(ValueError):
    """One or more CDK context values are invalid; the message lists every problem at once."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid CDK context ({len(self.problems)} problem(s)); fix with `cdk synth -c name=value`:"
                         f"\n{lines}")


# context keys of the CDK itself (feature flags have a ':' or start with '@'), and app.py's own
_FOREIGN_KEYS = frozenset({"stackName", "cli-telemetry", "acknowledged-issue-numbers", "assets-path"})


def unknown_context_keys(keys: Iterable[str]) -> list[str]:
    """A problem for each context key that is not ours nor the CDK's, naming the nearest known key."""
    known = sorted(_CONTEXT_KEYS.values())
    problems = []
    for key in keys:
        if key in _FOREIGN_KEYS or key in known or ":" in key or key.startswith(("@", "aws-cdk", "cdk")):
            continue
        nearest = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {nearest[0]!r}?" if nearest else f"known keys: {', '.join(known)}"
        problems.append(f"{key}: unknown context key; {hint}")
    return problems


@dataclass(frozen=True)
class StackSettings:
    """Sizing and behaviour of the deployed stack; units are in the field names."""

    worker_memory_mb: int = 1024
    worker_timeout_s: int = 300
    # the worker's /tmp (Lambda EphemeralStorage): downloads and merged outputs are spooled there; a merged
    # group needs about twice its size, and the worker schedules only as many groups at once as fit
    worker_ephemeral_storage_mb: int = 2048
    worker_max_concurrency: int = 50  # SQS event source MaximumConcurrency (Lambda allows 2..1000)
    worker_reserved_concurrency: int | None = None  # unreserved by default: the event source caps it
    batch_size: int = 10
    download_concurrency: int = 16  # downloads in flight per group, inside one worker invocation
    producer_memory_mb: int = 512
    producer_timeout_s: int = 900
    output_prefix: str = ""
    allow_hosts: str = ""  # comma-separated; empty = no allow list
    per_host_concurrency: int | None = None  # requests in flight per origin host, per worker invocation
    per_host_rps: float | None = None  # requests per second per origin host, per worker invocation
    # requests per second per origin host for the whole fleet: divided among workerMaxConcurrency invocations
    fleet_per_host_rps: float | None = None
    max_receive_count: int = 5
    queue_age_alarm_s: int | None = None  # None = derived, see effective_queue_age_alarm_s
    log_retention_days: int = 30
    schedule_expression: str | None = None
    schedule_manifest: str | None = None
    alarm_email: str | None = None
    on_missing: str = "fail"  # FANFETCH_ON_MISSING: 404/410 files of groups that name no on_missing
    redact_params: str = ""  # FANFETCH_REDACT_PARAMS: extra secret query parameter names, comma-separated
    # false: the Lambda's SQS event source is created disabled, for deployments that drain the queue with
    # `fanfetch worker` on fixed-IP machines (origins that allow-list one address)
    worker_event_source: bool = True

    def __post_init__(self) -> None:
        problems = _find_problems(self)
        if problems:
            raise ContextError(problems)

    @classmethod
    def from_context(cls, lookup: Callable[[str], object], *, all_keys: Iterable[str] = ()) -> StackSettings:
        """Build settings from CDK context via ``lookup`` (e.g. ``app.node.try_get_context``); ``all_keys``
        (``node.get_all_context()``) lets a misspelt key be refused, naming the nearest known one."""
        raw = {name: lookup(key) for name, key in _CONTEXT_KEYS.items()}
        unknown = unknown_context_keys(all_keys)
        try:
            settings = cls.from_mapping({k: v for k, v in raw.items() if v is not None})
        except ContextError as exc:
            if unknown:
                raise ContextError(unknown + exc.problems) from None
            raise
        if unknown:
            raise ContextError(unknown)
        return settings

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> StackSettings:
        """Parse field-named values (strings from ``-c``, JSON values from cdk.json); report all errors."""
        parsed: dict[str, object] = {}
        problems: list[str] = []
        for field in fields(cls):
            if field.name not in values:
                continue
            parser = _PARSERS[field.name]
            try:
                parsed[field.name] = parser(values[field.name])
            except (ValueError, TypeError) as exc:  # every key is checked: one bad type never hides the rest
                problems.append(f"{_CONTEXT_KEYS[field.name]}={values[field.name]!r}: {exc}")
        if problems:  # the values that did parse are checked too, so every problem is named at once
            draft = object.__new__(cls)
            for field in fields(cls):
                object.__setattr__(draft, field.name, parsed.get(field.name, field.default))
            raise ContextError(problems + _find_problems(draft))
        return cls(**parsed)  # type: ignore[arg-type]  # __post_init__ checks ranges and combinations

    @property
    def queue_visibility_timeout_s(self) -> int:
        """AWS: set the source queue's visibility timeout to at least six times the function timeout."""
        return 6 * self.worker_timeout_s

    @property
    def effective_queue_age_alarm_s(self) -> int:
        """Oldest-message age that means the queue is not draining.

        A healthy message can be received ``max_receive_count`` times, each time invisible for the visibility
        timeout, before it moves to the DLQ; anything older than that (and at least an hour) is stuck backlog.
        """
        if self.queue_age_alarm_s is not None:
            return self.queue_age_alarm_s
        return max(3600, self.max_receive_count * self.queue_visibility_timeout_s)

    @property
    def worker_per_host_rps(self) -> float | None:
        """FANFETCH_PER_HOST_RPS of each worker invocation: ``perHostRps``, or ``fleetPerHostRps`` shared
        among ``workerMaxConcurrency`` invocations (the stricter of the two when both are given)."""
        return worker_share_rps(self.per_host_rps, self.fleet_per_host_rps, self.worker_max_concurrency)

    @property
    def has_schedule(self) -> bool:
        return self.schedule_expression is not None


# field name -> CDK context key (camelCase, as documented in the README)
_CONTEXT_KEYS: dict[str, str] = {
    "worker_memory_mb": "workerMemoryMb",
    "worker_timeout_s": "workerTimeoutS",
    "worker_ephemeral_storage_mb": "workerEphemeralStorageMb",
    "worker_max_concurrency": "workerMaxConcurrency",
    "worker_reserved_concurrency": "workerReservedConcurrency",
    "batch_size": "batchSize",
    "download_concurrency": "downloadConcurrency",
    "producer_memory_mb": "producerMemoryMb",
    "producer_timeout_s": "producerTimeoutS",
    "output_prefix": "outputPrefix",
    "allow_hosts": "allowHosts",
    "per_host_concurrency": "perHostConcurrency",
    "per_host_rps": "perHostRps",
    "fleet_per_host_rps": "fleetPerHostRps",
    "max_receive_count": "maxReceiveCount",
    "queue_age_alarm_s": "queueAgeAlarmS",
    "log_retention_days": "logRetentionDays",
    "schedule_expression": "scheduleExpression",
    "schedule_manifest": "scheduleManifest",
    "alarm_email": "alarmEmail",
    "on_missing": "onMissing",
    "redact_params": "redactParams",
    "worker_event_source": "workerEventSource",
}

# field name -> (low, high) inclusive, for the integer settings
_INT_RANGES: dict[str, tuple[int, int]] = {
    "worker_memory_mb": (128, 10240),
    # The worker keeps ~15 s of its time back to store and report (FANFETCH_DEADLINE_RESERVE_S).
    "worker_timeout_s": (30, 900),
    "worker_ephemeral_storage_mb": (512, 10240),  # Lambda's EphemeralStorage.Size limits (MiB)
    "worker_max_concurrency": (2, 1000),
    "worker_reserved_concurrency": (2, 10_000),
    "batch_size": (1, 10),
    "download_concurrency": (1, 256),
    "producer_memory_mb": (128, 10240),
    "producer_timeout_s": (10, 900),
    "max_receive_count": (5, 1000),
    "queue_age_alarm_s": (60, 1_209_600),
    "per_host_concurrency": (1, 1000),
}


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        return int(value)
    raise ValueError("expected an integer")


def _parse_optional_int(value: object) -> int | None:
    if isinstance(value, str) and value.strip() == "":
        return None
    return _parse_int(value)


def _parse_optional_positive_float(value: object) -> float | None:
    if isinstance(value, str) and value.strip() == "":
        return None
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("expected a number") from None
    if not number > 0:
        raise ValueError("must be above 0")
    return number


def _parse_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value.strip()


def _parse_optional_str(value: object) -> str | None:
    text = _parse_str(value)
    return text or None


def _parse_hosts(value: object) -> str:
    """Accept "a.example, b.example" (from -c) or ["a.example", "b.example"] (from cdk.json)."""
    if isinstance(value, list | tuple):
        items = [_parse_str(item) for item in value]
    else:
        items = _parse_str(value).split(",")
    hosts = [item.strip().lower() for item in items]
    if hosts == [""]:
        return ""
    bad = [host for host in hosts if not _HOST_RE.match(host)]
    if bad:
        listed = ", ".join(repr(b) for b in bad)
        raise ValueError(f"not a host[:port]: {listed} (give comma-separated host[:port] entries)")
    return ",".join(hosts)


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_redact_params(value: object) -> str:
    """Accept "api_key, sig2" (from -c) or ["api_key", "sig2"] (from cdk.json)."""
    items = [_parse_str(v) for v in value] if isinstance(value, list | tuple) else _parse_str(value).split(",")
    names = [item.strip() for item in items if item.strip()]
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_.~%+-]+", n)]
    if bad:
        raise ValueError(f"not a query parameter name: {', '.join(repr(b) for b in bad)}")
    return ",".join(names)


def _parse_on_missing(value: object) -> str:
    text = _parse_str(value).lower()
    if text not in ("fail", "skip"):
        raise ValueError("expected fail or skip")
    return text


_PARSERS: dict[str, Callable[[object], object]] = {
    **{name: _parse_int for name in _INT_RANGES},
    "worker_reserved_concurrency": _parse_optional_int,
    "queue_age_alarm_s": _parse_optional_int,
    "per_host_concurrency": _parse_optional_int,
    "per_host_rps": _parse_optional_positive_float,
    "fleet_per_host_rps": _parse_optional_positive_float,
    "log_retention_days": _parse_int,
    "output_prefix": _parse_str,
    "allow_hosts": _parse_hosts,
    "schedule_expression": _parse_optional_str,
    "schedule_manifest": _parse_optional_str,
    "alarm_email": _parse_optional_str,
    "on_missing": _parse_on_missing,
    "redact_params": _parse_redact_params,
    "worker_event_source": _parse_bool,
}


def _find_problems(settings: StackSettings) -> list[str]:
    problems: list[str] = []
    for name, (low, high) in _INT_RANGES.items():
        value = getattr(settings, name)
        if value is not None and not low <= value <= high:
            problems.append(f"{_CONTEXT_KEYS[name]}={value!r}: must be between {low} and {high}")
    if settings.log_retention_days not in LOG_RETENTION_DAYS_ALLOWED:
        allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS_ALLOWED)
        problems.append(f"logRetentionDays={settings.log_retention_days!r}: must be one of {allowed}")
    reserved = settings.worker_reserved_concurrency
    if reserved is not None and reserved < settings.worker_max_concurrency:
        problems.append(
            f"workerReservedConcurrency={reserved!r}: must be >= workerMaxConcurrency "
            f"({settings.worker_max_concurrency}), or the event source is throttled"
        )
    problems.extend(_find_prefix_problems(settings.output_prefix))
    problems.extend(_find_schedule_problems(settings.schedule_expression, settings.schedule_manifest))
    if settings.alarm_email is not None and not _EMAIL_RE.match(settings.alarm_email):
        problems.append(f"alarmEmail={settings.alarm_email!r}: not an e-mail address")
    return problems


def _find_prefix_problems(prefix: str) -> list[str]:
    if prefix.startswith("/") or ".." in prefix.split("/"):
        return [f"outputPrefix={prefix!r}: must be a relative S3 key prefix (no leading '/', no '..')"]
    if len(prefix) > _MAX_PREFIX_CHARS or any(ch.isspace() or not ch.isprintable() for ch in prefix):
        return [f"outputPrefix={prefix!r}: at most {_MAX_PREFIX_CHARS} printable characters, no whitespace"]
    return []


def _find_schedule_problems(expression: str | None, manifest: str | None) -> list[str]:
    if (expression is None) != (manifest is None):
        return ["scheduleExpression and scheduleManifest: give both (a schedule needs a manifest) or neither"]
    problems: list[str] = []
    if expression is not None and not _SCHEDULE_RE.match(expression):
        problems.append(
            f"scheduleExpression={expression!r}: must be an EventBridge 'rate(...)' or 'cron(...)' expression"
        )
    if manifest is not None and (manifest.startswith(("/", "s3://")) or any(c.isspace() for c in manifest)):
        problems.append(
            f"scheduleManifest={manifest!r}: must be an object key in the stack's bucket "
            "(e.g. 'manifests/daily.csv'), not a URL or absolute path"
        )
    return problems

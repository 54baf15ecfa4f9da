"""Configuration of the Lambda entry points, read from the environment once and validated whole.

``Settings.from_env`` names every bad variable in one error, so a misconfigured deployment
fails at its first invocation with a message that says what to fix.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from fanfetch.errors import InputError

__all__ = ["Settings", "parse_allow_hosts", "allow_hosts_from_env", "aws_region", "check_allow_host"]

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9_\-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_\-]{1,63}(?<!-))*\.?\Z")


def parse_allow_hosts(value: str) -> tuple[str, ...]:
    """``"a.example:8080, 127.0.0.1:9000"`` → ``("a.example:8080", "127.0.0.1:9000")``."""
    return tuple(h.strip() for h in value.split(",") if h.strip())


def check_allow_host(entry: str) -> str:
    """``host``, ``host:port`` or ``[v6]:port`` with a real host and a port 1-65535; ValueError naming
    what is wrong. Shared by ``--allow-host`` and ``FANFETCH_ALLOW_HOSTS``."""
    text = entry.strip()
    port: str | None = None
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r} is not host, host:port or [v6 address]:port")
        port = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{entry!r}: {host!r} is not an IPv6 address") from None
    elif text.count(":") > 1:
        try:
            ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{entry!r} is not a host: write an IPv6 address as [addr] or [addr]:port") from None
        host = text
    else:
        host, _, port = text.partition(":") if ":" in text else (text, "", None)
        if not host or not _HOSTNAME.match(host):
            raise ValueError(f"{entry!r} does not start with a host name or IPv4 address")
    if port is not None and (not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"{entry!r} has port {port!r}: a port is 1-65535")
    return text


def _allow_host_problems(entries: tuple[str, ...], name: str) -> list[str]:
    problems = []
    for entry in entries:
        try:
            check_allow_host(entry)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    return problems


def allow_hosts_from_env(env: Mapping[str, str]) -> tuple[str, ...]:
    """``FANFETCH_ALLOW_HOSTS`` parsed and checked; InputError naming every bad entry."""
    entries = parse_allow_hosts(env.get("FANFETCH_ALLOW_HOSTS", ""))
    problems = _allow_host_problems(entries, "FANFETCH_ALLOW_HOSTS")
    if problems:
        raise InputError("bad configuration: " + "; ".join(problems))
    return entries


def aws_region(env: Mapping[str, str]) -> str | None:
    """The region as the AWS CLI v2 and the other AWS SDKs take it: ``AWS_REGION`` first, then
    ``AWS_DEFAULT_REGION``; None leaves it to botocore (profile, instance metadata)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _optional(value: float, kind: type) -> float | None:
    """0 (the "unset" default of an optional number) becomes None."""
    return kind(value) if value else None


@dataclass(frozen=True)
class Settings:
    """Every environment variable the Lambdas read, with its unit and default."""

    bucket_name: str = ""  # BUCKET_NAME: outputs (worker) and manifests (producer)
    queue_url: str = ""  # QUEUE_URL: where the producer enqueues
    dlq_url: str = ""  # DLQ_URL: where the worker moves messages that cannot succeed, with their reason
    max_receive_count: int = 5  # FANFETCH_MAX_RECEIVE_COUNT: the queue's redrive maxReceiveCount
    output_prefix: str = ""  # OUTPUT_PREFIX: prepended to every output key
    concurrency: int = 16  # FANFETCH_CONCURRENCY: file downloads in flight per worker invocation
    groups_in_flight: int = 10  # FANFETCH_GROUPS_IN_FLIGHT: groups of a batch processed at once
    allow_hosts: tuple[str, ...] = ()  # FANFETCH_ALLOW_HOSTS: comma-separated host[:port] allowed although private
    deadline_reserve_s: float = 15.0  # FANFETCH_DEADLINE_RESERVE_S: time kept back to store and report
    max_file_bytes: int = 5 * 2**30  # FANFETCH_MAX_FILE_BYTES: larger downloads fail permanently
    per_host_concurrency: int | None = None  # FANFETCH_PER_HOST_CONCURRENCY: requests in flight per host, per worker
    per_host_rps: float | None = None  # FANFETCH_PER_HOST_RPS: requests per second per host, per worker
    ledger_table: str = ""  # LEDGER_TABLE: the job ledger (DynamoDB); empty: no job bookkeeping
    event_bus_name: str = "default"  # EVENT_BUS_NAME: where "job finished" is published
    send_calls_in_flight: int = 16  # FANFETCH_SEND_CALLS_IN_FLIGHT: SendMessageBatch calls at once
    on_missing: str = "fail"  # FANFETCH_ON_MISSING: fail | skip, for groups whose message names no on_missing
    spool_max_bytes: int | None = None  # FANFETCH_SPOOL_MAX_BYTES: cap of the worker's spool budget (else /tmp's room)
    # The worker's bookkeeping clients (ledger, EventBridge, results, failure records, DLQ): small requests AWS
    # answers in milliseconds. Each attempt, with the pause that may follow it, must fit FANFETCH_DEADLINE_RESERVE_S
    # (bootstrap.worker checks): 2 + 5 s and 3 attempts need 13 / 14 / 9 s of the 15 s.
    bookkeeping_connect_timeout_s: float = 2.0  # FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S
    bookkeeping_read_timeout_s: float = 5.0  # FANFETCH_BOOKKEEPING_READ_TIMEOUT_S
    bookkeeping_max_attempts: int = 3  # FANFETCH_BOOKKEEPING_MAX_ATTEMPTS: attempts per call, the first included

    @property
    def output_key_prefix(self) -> str:
        """``OUTPUT_PREFIX`` as a key prefix: empty, or ending in ``/``."""
        prefix = self.output_prefix.strip("/")
        return f"{prefix}/" if prefix else ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, require: tuple[str, ...] = ()) -> Settings:
        """Build settings from ``env``; raise InputError naming every missing or malformed variable."""
        problems: list[str] = []

        def number(name: str, default: float, kind: type, minimum: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}")
                return default
            if not math.isfinite(value):
                problems.append(f"{name}={raw!r} is not a finite number")
                return default
            if value < minimum:
                problems.append(f"{name}={raw!r} must be at least {minimum}")
                return default
            return value

        for name in require:
            if not env.get(name, "").strip():
                problems.append(f"{name} is not set")
        settings = cls(
            bucket_name=env.get("BUCKET_NAME", "").strip(),
            queue_url=env.get("QUEUE_URL", "").strip(),
            output_prefix=env.get("OUTPUT_PREFIX", "").strip(),
            dlq_url=env.get("DLQ_URL", "").strip(),
            ledger_table=env.get("LEDGER_TABLE", "").strip(),
            event_bus_name=env.get("EVENT_BUS_NAME", "").strip() or "default",
            max_receive_count=int(number("FANFETCH_MAX_RECEIVE_COUNT", cls.max_receive_count, int, 1)),
            concurrency=int(number("FANFETCH_CONCURRENCY", cls.concurrency, int, 1)),
            groups_in_flight=int(number("FANFETCH_GROUPS_IN_FLIGHT", cls.groups_in_flight, int, 1)),
            allow_hosts=parse_allow_hosts(env.get("FANFETCH_ALLOW_HOSTS", "")),
            deadline_reserve_s=float(number("FANFETCH_DEADLINE_RESERVE_S", cls.deadline_reserve_s, float, 0)),
            max_file_bytes=int(number("FANFETCH_MAX_FILE_BYTES", cls.max_file_bytes, int, 1)),
            send_calls_in_flight=int(number("FANFETCH_SEND_CALLS_IN_FLIGHT", cls.send_calls_in_flight, int, 1)),
            per_host_concurrency=_optional(number("FANFETCH_PER_HOST_CONCURRENCY", 0, int, 1), int),
            per_host_rps=_optional(number("FANFETCH_PER_HOST_RPS", 0.0, float, 0.001), float),
            spool_max_bytes=_optional(number("FANFETCH_SPOOL_MAX_BYTES", 0, int, 1), int),
            bookkeeping_connect_timeout_s=float(number("FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S",
                                                       cls.bookkeeping_connect_timeout_s, float, 0.1)),
            bookkeeping_read_timeout_s=float(number("FANFETCH_BOOKKEEPING_READ_TIMEOUT_S",
                                                    cls.bookkeeping_read_timeout_s, float, 0.1)),
            bookkeeping_max_attempts=int(number("FANFETCH_BOOKKEEPING_MAX_ATTEMPTS", cls.bookkeeping_max_attempts,
                                                int, 1)),
        )
        problems += _allow_host_problems(settings.allow_hosts, "FANFETCH_ALLOW_HOSTS")
        on_missing = env.get("FANFETCH_ON_MISSING", "").strip() or cls.on_missing
        if on_missing not in ("fail", "skip"):
            problems.append(f"FANFETCH_ON_MISSING={on_missing!r} must be fail or skip")
        else:
            settings = replace(settings, on_missing=on_missing)
        if problems:
            raise InputError("bad configuration: " + "; ".join(problems))
        return settings

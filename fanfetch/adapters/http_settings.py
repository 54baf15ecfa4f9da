"""Every knob of the HTTP adapter (``HttpSettings``), validated once; shared by the fetcher and its tests."""

from __future__ import annotations

from dataclasses import dataclass

from fanfetch import __version__

__all__ = ["HttpSettings"]

_MIB = 2**20
_MAX_CONNECTIONS_PER_FILE = 16  # default cap of ranged connections per file (aria2c's -x maximum)


@dataclass(frozen=True)
class HttpSettings:
    """Every knob of the HTTP adapter, validated once; the unit is in each name."""

    connect_timeout_s: float = 10.0  # per connection attempt (TCP + TLS handshake)
    read_timeout_s: float = 60.0  # longest silence allowed between two reads of one response
    low_speed_bytes_per_s: int = 1024  # low-speed guard: slower than this ...
    low_speed_time_s: int = 30  # ... for this many seconds ends the attempt (retryable); 0 bytes/s: off
    file_deadline_s: float = 900.0  # total time for one file, all attempts and backoff included
    max_attempts: int = 6  # requests per file (each may follow redirects) before giving up
    backoff_base_s: float = 0.5  # first backoff window; doubles per failed attempt (full jitter)
    backoff_max_s: float = 60.0  # cap of the backoff window and of an honoured Retry-After
    max_file_bytes: int = 5 * 2**30  # largest decoded body accepted (guards against gzip bombs)
    max_redirects: int = 5  # redirect hops followed per attempt
    pool_size: int = 64  # connections kept per origin address = threads that may fetch at once
    chunk_bytes: int = 1 << 20  # bytes per read; >= 1 MiB keeps per-chunk CPU overhead small
    user_agent: str = f"fanfetch/{__version__} (+https://github.com/fanfetch/fanfetch)"
    ca_bundle: str | None = None  # CA file/dir for TLS; None: $REQUESTS_CA_BUNDLE, else certifi's
    ranged_connections: int | None = None  # ranged connections per large file; None: min(16, pool_size); 1: off
    part_bytes: int = 16 * _MIB  # largest part of a ranged download (parts are part_bytes/2 .. part_bytes)
    ranged_min_file_bytes: int = 32 * _MIB  # smaller files (by Content-Length) use one stream
    per_host_concurrency: int | None = None  # requests in flight per host (per fetcher); None: pool_size
    per_host_rps: float | None = None  # request starts per second per host (per fetcher); None: unlimited
    dns_cache_s: float = 60.0  # a host name's resolved, guard-approved addresses are reused this long; 0: per request

    @property
    def connections_per_file(self) -> int:
        """Ranged connections one large file may use at once."""
        if self.ranged_connections is not None:
            return self.ranged_connections
        return min(_MAX_CONNECTIONS_PER_FILE, self.pool_size)

    @property
    def polite(self) -> bool:
        """Per-host limits (and with them AIMD slow-down on 429/503) are on."""
        return self.per_host_concurrency is not None or self.per_host_rps is not None

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "read_timeout_s", "file_deadline_s", "backoff_max_s"):
            _require(name, getattr(self, name) > 0, "must be > 0")
        _require("backoff_base_s", self.backoff_base_s >= 0, "must be >= 0")
        _require("dns_cache_s", self.dns_cache_s >= 0, "must be >= 0")
        for name in ("low_speed_bytes_per_s", "low_speed_time_s"):
            value = getattr(self, name)
            _require(name, isinstance(value, int) and not isinstance(value, bool) and value >= 0, "must be an int >= 0")
        _require("low_speed_time_s", self.low_speed_time_s >= 1 or not self.low_speed_bytes_per_s,
                 "must be >= 1 while low_speed_bytes_per_s is set")
        for name in ("max_attempts", "max_file_bytes", "pool_size", "chunk_bytes", "ranged_min_file_bytes"):
            value = getattr(self, name)
            _require(
                name,
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                "must be an int >= 1",
            )
        value = self.max_redirects
        _require(
            "max_redirects",
            isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            "must be >= 0",
        )
        _require("user_agent", bool(self.user_agent.strip()), "must not be empty")
        for name in ("ranged_connections", "per_host_concurrency"):
            value = getattr(self, name)
            _require(
                name,
                value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                "must be None or an int >= 1",
            )
        _require(
            "part_bytes",
            isinstance(self.part_bytes, int) and not isinstance(self.part_bytes, bool) and self.part_bytes >= 2,
            "must be an int >= 2",
        )
        rps = self.per_host_rps
        _require(
            "per_host_rps",
            rps is None or (isinstance(rps, (int, float)) and not isinstance(rps, bool) and 0 < rps < float("inf")),
            "must be None or a number > 0",
        )


def _require(field: str, ok: bool, problem: str) -> None:
    if not ok:
        raise ValueError(f"HttpSettings.{field} {problem}")

"""What a request's end means to the fetcher: libcurl result codes, the attempt loop's internal
outcomes (a body, a redirect, the reasons an attempt stops) and the checks a stored body must pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fanfetch.core.ledger import Validator
from fanfetch.core.models import Source
from fanfetch.core.retry import is_retryable_status
from fanfetch.errors import FetchError, PermanentFetchError, RetryableFetchError


class DeadlinePassed(Exception):
    """Internal: the file's deadline passed during an attempt; no further attempt may start."""


class SinkFailed(Exception):
    """Internal: writing to ``dest`` failed; that is the caller's disk, not the network."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


class AttemptCancelled(Exception):
    """Internal: the run is aborting (``CurlFetcher.cancel``); no further attempt may start."""


class ValidatorChanged(Exception):
    """Internal: a part's ETag / Last-Modified / total length differs from the probe's."""


class RangeIgnored(Exception):
    """Internal: the origin answered a part with something other than that part (e.g. 200)."""


class PartFailed(Exception):
    """Internal: a part used up its own attempts; the file fails without a whole-file retry."""

    def __init__(self, error: FetchError):
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class Body:
    """What one attempt stored: bytes, the origin's validators, or "not modified" (a 304)."""

    size: int
    etag: str | None
    last_modified: str | None
    not_modified: bool = False
    sha256: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Redirect:
    target: str


def content_length(headers: dict[str, str]) -> int | None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None  # chunked wins over a Content-Length sent beside it (RFC 9112 section 6.3)
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def status_error(url: str, status: int, retry_after_s: float | None) -> FetchError:
    if is_retryable_status(status):
        return RetryableFetchError(url, f"HTTP {status}", status=status, retry_after_s=retry_after_s)
    if 300 <= status < 400:
        return PermanentFetchError(url, f"HTTP {status} without a usable Location", status=status)
    if status == 206:
        return PermanentFetchError(url, "HTTP 206 Partial Content to a request without Range", status=status)
    return PermanentFetchError(url, f"HTTP {status}", status=status)


def conditional_headers(validator: Validator | None) -> list[str]:
    if validator is None:
        return []
    headers = []
    if validator.etag:
        headers.append(f"If-None-Match: {validator.etag}")
    if validator.last_modified:
        headers.append(f"If-Modified-Since: {validator.last_modified}")
    return headers


def hash_names(source: Source, digest: bool) -> tuple[str, ...]:
    sha256, md5 = digest or source.sha256 is not None, source.md5 is not None
    return _HASH_NAMES[sha256, md5]


def hashers(source: Source, digest: bool) -> dict[str, Any]:
    sha256, md5 = digest or source.sha256 is not None, source.md5 is not None
    if not (sha256 or md5):
        return {}  # most files: no hash to keep (a constructor looked up by name costs ~1 µs a file)
    return {name: _HASH_MAKERS[name](usedforsecurity=False) for name in _HASH_NAMES[sha256, md5]}


_HASH_NAMES = {(sha256, md5): ("sha256",) * sha256 + ("md5",) * md5  # (sha256 wanted, md5 wanted) -> names
               for sha256 in (False, True) for md5 in (False, True)}
_HASH_MAKERS = {"sha256": hashlib.sha256, "md5": hashlib.md5}  # integrity, not security (usedforsecurity=False)


def check_integrity(source: Source, received: int, digests: dict[str, str], status: int) -> None:
    url = source.url
    if source.size is not None and received != source.size:
        raise RetryableFetchError(url, f"size mismatch: expected {source.size} bytes, got {received}", status=status)
    for name, actual in digests.items():
        expected = getattr(source, name)
        if expected is not None and actual != str(expected).lower():
            raise RetryableFetchError(url, f"checksum mismatch: {name} expected {expected}, got {actual}",
                                      status=status)


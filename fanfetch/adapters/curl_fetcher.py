"""``fanfetch.ports.Fetcher`` on libcurl (curl_engine.py): the caller's thread plans attempts, redirect
hops and backoff; libcurl, on the engine's one I/O thread, runs each request under a total timeout,
a connect timeout and a low-speed guard, with the SSRF guard checking every address it dials.
libcurl's result codes become ``fanfetch.errors`` here, by code (never by message text).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import pycurl

from fanfetch.adapters.clock import SystemClock
from fanfetch.adapters.curl_engine import CANCELLED, SILENCE, CurlEngine, Done, socket_opener
from fanfetch.adapters.guard import AddressGuard, normalise_ip
from fanfetch.adapters.http_settings import HttpSettings
from fanfetch.adapters.politeness import HostGate, HostWaitTooLong
from fanfetch.adapters.ranged import OffsetSink, PartsCancelled, download_parts
from fanfetch.core.encoding import (
    ACCEPT_ENCODING,
    CorruptEncoding,
    StreamDecoder,
    TruncatedEncoding,
    UnsupportedEncoding,
    plan_body,
)
from fanfetch.core.ledger import Validator
from fanfetch.core.models import FileResult, Source
from fanfetch.core.ranges import Part, parse_content_range, plan_parts
from fanfetch.core.retry import backoff_delay, is_retryable_status
from fanfetch.errors import (
    BlockedAddressError,
    FetchError,
    PermanentFetchError,
    RetryableFetchError,
    RetryAfterTooLong,
)
from fanfetch.ports import Clock

__all__ = ["CurlFetcher", "HttpSettings"]

_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
_MAX_ERROR_BODY = 1 << 20  # an error response's body is read (keeping the connection) up to this, then cut
_LITERAL_PINS = 1024  # IP-literal hosts whose guard verdict is remembered (no DNS involved)
_MAX_BUFFER = 512 * 1024  # libcurl's receive buffer per transfer (one write callback per buffer at most)
_HASHED_ROUNDS = 2  # parts in >= 2 rounds: the first is hashed while the second lands (ranges.plan_parts)
_DEADLINE_SLACK = 0.9  # a timeout (28) after this share of the total budget is the deadline, not a stall
# libcurl results that will be the same on every attempt: the origin speaks broken HTTP.
# libcurl result codes (CURLE_*), by number: pycurl does not name every one.
_UNSUPPORTED_PROTOCOL, _URL_MALFORMAT, _COULDNT_CONNECT, _WEIRD_SERVER_REPLY = 1, 3, 7, 8
_PARTIAL_FILE, _OPERATION_TIMEDOUT, _RECV_ERROR, _FILESIZE_EXCEEDED = 18, 28, 56, 63
# 1 comes back for a reply that is no HTTP/1.x (our URLs are http/https before they reach libcurl).
_PROTOCOL_VIOLATIONS = frozenset({_UNSUPPORTED_PROTOCOL, _WEIRD_SERVER_REPLY, 16, 61, 92})
_TLS_VERIFY = frozenset({60, 51, 58, 77, 83, 90, 91})  # peer verification, certs, CA file, pinned key, OCSP


def _ca_bundle(settings: HttpSettings) -> str | None:
    configured = settings.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if configured:
        return configured
    try:
        import certifi
    except ImportError:  # libcurl's built-in default then
        return None
    return certifi.where()


class _DeadlinePassed(Exception):
    """Internal: the file's deadline passed during an attempt; no further attempt may start."""


class _SinkFailed(Exception):
    """Internal: writing to ``dest`` failed; that is the caller's disk, not the network."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


class _Cancelled(Exception):
    """Internal: the run is aborting (``CurlFetcher.cancel``); no further attempt may start."""


class _ValidatorChanged(Exception):
    """Internal: a part's ETag / Last-Modified / total length differs from the probe's."""


class _RangeIgnored(Exception):
    """Internal: the origin answered a part with something other than that part (e.g. 200)."""


class _PartFailed(Exception):
    """Internal: a part used up its own attempts; the file fails without a whole-file retry."""

    def __init__(self, error: FetchError):
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class _Body:
    """What one attempt stored: bytes, the origin's validators, or "not modified" (a 304)."""

    size: int
    etag: str | None
    last_modified: str | None
    not_modified: bool = False
    sha256: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class _Redirect:
    target: str


_DECIDED = threading.Event()  # an injected first request (fetch_async) is decided already
_DECIDED.set()


class _AsyncFile:
    """One fetch_async file: its arguments and its future (``end``/``validator`` set once it starts)."""

    __slots__ = ("future", "source", "dest", "deadline", "validator", "digest", "before", "end")

    def __init__(self, future: Future[FileResult], source: Source, dest: BinaryIO, deadline: float | None,
                 validator: Validator | None, digest: bool, before: Callable[[], None] | None):
        self.future, self.source, self.dest, self.deadline = future, source, dest, deadline
        self.validator, self.digest, self.before, self.end = validator, digest, before, 0.0


class _Request:
    """One HTTP request as a libcurl transfer: its options, and its header/body callbacks, which run
    on the engine's I/O thread. ``outcome`` (caller's thread) turns the end into a body or an error."""

    def __init__(self, fetcher: CurlFetcher, url: str, hop: str, pins: tuple[str, int, tuple[str, ...]] | None,
                 timeout_s: float, extra: list[str]):
        self.fetcher = fetcher
        self.url = url  # the URL the caller asked for (errors name it)
        self.hop = hop  # the URL this request goes to
        self.pins = pins  # (host, port, approved addresses)
        self.timeout_s = timeout_s
        self.extra = extra
        settings = fetcher.settings
        self.silence_s: float | None = settings.read_timeout_s if settings.read_timeout_s < timeout_s else None
        self.last_activity = 0.0
        self.started = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.error: BaseException | None = None
        self.blocked: str | None = None

    # --- set up (I/O thread) -----------------------------------------------------------------------------

    @property
    def shares(self) -> object:
        """Handles last set up by a transfer of the same fetcher keep its constant options (no reset)."""
        return self.fetcher

    def configure(self, easy: pycurl.Curl, constant: bool = True) -> None:
        """Set this request's options; ``constant``: the fetcher's fixed ones too (a fresh or reset handle)."""
        fetcher, settings = self.fetcher, self.fetcher.settings
        self.started = time.monotonic()
        if constant:
            fetcher.set_constant_options(easy)
        easy.setopt(pycurl.URL, self.hop)
        easy.setopt(pycurl.HTTPHEADER, fetcher.base_headers + self.extra if self.extra else fetcher.base_headers)
        easy.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(min(settings.connect_timeout_s, self.timeout_s) * 1000)))
        easy.setopt(pycurl.TIMEOUT_MS, max(1, int(self.timeout_s * 1000)))
        easy.setopt(pycurl.RESOLVE, fetcher.resolve_list(self.pins))
        easy.setopt(pycurl.OPENSOCKETFUNCTION, socket_opener(self._may_dial, self._refuse))
        easy.setopt(pycurl.HEADERFUNCTION, self._header)
        easy.setopt(pycurl.WRITEFUNCTION, self._write)

    def _may_dial(self, family: int, ip: str, port: int) -> bool:
        """The SSRF guard at connect time: only an address the guard approved for this hop."""
        if self.pins is None:
            return False
        _, pinned_port, addresses = self.pins
        return port == pinned_port and normalise_ip(ip) in addresses

    def _refuse(self, ip: str, port: int) -> None:
        self.blocked = f"connection to {ip}:{port} refused by the address guard (not the checked address)"

    # --- callbacks (I/O thread) ----------------------------------------------------------------------------

    def _header(self, line: bytes) -> int | None:
        self.last_activity = time.monotonic()
        if line.startswith(b"HTTP/"):
            parts = line.split(None, 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.headers = {}
            return None
        if line in (b"\r\n", b"\n"):
            if 100 <= self.status < 200:
                return None  # an interim answer (100 Continue, 103 Early Hints): the final one follows
            return None if self._headers_done() else 0
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            key = name.strip().lower()
            text = value.strip()
            self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        return None

    def _headers_done(self) -> bool:
        return True

    def _write(self, data: bytes) -> int | None:
        self.last_activity = time.monotonic()
        return None

    def _fail(self, error: BaseException) -> int:
        if self.error is None:
            self.error = error
        return 0

    # --- the end (caller's thread) -----------------------------------------------------------------------------

    def raise_transport(self, done: Done) -> None:
        """Raise the error for a transfer that did not complete (``done.code`` != 0)."""
        url, code, status = self.url, done.code, done.status or None
        if self.error is not None:
            raise self.error
        if self.blocked is not None:
            raise BlockedAddressError(url, self.blocked)
        if code == CANCELLED:
            raise _Cancelled()
        if code == SILENCE:
            raise RetryableFetchError(url, f"read timeout ({done.message})", status=status)
        detail = f"curl {code}: {done.message}"[:300]
        if code == _OPERATION_TIMEDOUT:
            elapsed = time.monotonic() - self.started
            if elapsed >= self.timeout_s * _DEADLINE_SLACK:
                raise _DeadlinePassed()
            if self.status == 0 and self.last_activity == 0.0:
                raise RetryableFetchError(url, f"connect timeout ({detail})")
            settings = self.fetcher.settings
            slow = f"below {settings.low_speed_bytes_per_s} bytes/s for {settings.low_speed_time_s} s"
            raise RetryableFetchError(url, f"too slow: {slow} ({detail})", status=status)
        if code == _PARTIAL_FILE:
            raise RetryableFetchError(url, f"body shorter than Content-Length ({detail})", status=status)
        if code == _FILESIZE_EXCEEDED:
            raise PermanentFetchError(
                url, f"too large: Content-Length over max_file_bytes {self.fetcher.settings.max_file_bytes}",
                status=status,
            )
        if code == _COULDNT_CONNECT:
            raise RetryableFetchError(url, f"connection refused ({detail})")
        if code in _TLS_VERIFY:
            raise PermanentFetchError(url, f"TLS certificate verification failed ({detail})")
        if code in _PROTOCOL_VIOLATIONS:
            raise PermanentFetchError(url, f"protocol violation ({detail})", status=status)
        if code == _RECV_ERROR and done.os_errno == 0 and self.status:
            # libcurl refused what it read (a chunk size that is not hex...), not a socket error: the same
            # bytes come back on every attempt
            raise PermanentFetchError(url, f"protocol violation ({detail})", status=status)
        if code == _URL_MALFORMAT:
            raise PermanentFetchError(url, f"invalid URL ({detail})")
        raise RetryableFetchError(url, f"connection broken ({detail})", status=status)


class _Stream(_Request):
    """A whole-body GET: decoded (content coding), size-limited, hashed and written into ``dest``."""

    def __init__(self, fetcher: CurlFetcher, source: Source, hop: str, pins: tuple[str, int, tuple[str, ...]] | None,
                 timeout_s: float, extra: list[str], dest: BinaryIO, digest: bool, conditional: bool,
                 rangeable: Callable[[_Stream], bool] | None):
        super().__init__(fetcher, source.url, hop, pins, timeout_s, extra)
        self.source = source
        self.dest = dest
        self.digest = digest
        self.conditional = conditional
        self.rangeable = rangeable
        self.mode = "discard"  # discard (error, redirect, 304) / store / probe (a ranged download's first part)
        self.decoder: StreamDecoder | None = None
        self.hashers: dict[str, Any] = {}
        self.received = 0
        self.discarded = 0
        self.sink: OffsetSink | None = None
        self.first: Part | None = None
        self.follower: Any = None
        self.offset = 0
        # set once a probe is decided (headers read) or the transfer ended; made by whoever waits on it
        self.decided: threading.Event | None = None
        self.on_probe: Callable[[], None] | None = None  # fetch_async: a probe continues on a thread at once
        self.ended: threading.Event | None = None  # fetch_async's probe: set as the transfer ends
        self.done: Done | None = None  # fetch_async: how the transfer ended

    def _headers_done(self) -> bool:
        status, url, settings = self.status, self.url, self.fetcher.settings
        self.mode = "discard"
        if self.sink is not None:  # a probe that already decided (cannot happen twice): refuse
            return False
        if not 200 <= status < 300 or status == 206:
            return True
        declared = _content_length(self.headers)
        if declared is not None and declared > settings.max_file_bytes:
            self._fail(PermanentFetchError(
                url, f"too large: Content-Length {declared} > max_file_bytes {settings.max_file_bytes}", status=status))
            return False
        try:
            plan = plan_body(url, self.headers.get("content-encoding"), self.headers.get("content-type"))
        except UnsupportedEncoding as exc:
            self._fail(PermanentFetchError(url, str(exc), status=status))
            return False
        if self.rangeable is not None and self.rangeable(self):
            self.mode = "probe"
            if self.decided is not None:
                self.decided.set()
            if self.on_probe is not None:
                self.on_probe()
            return True
        try:
            self.dest.seek(0)
            self.dest.truncate()
        except OSError as exc:
            self._fail(_SinkFailed(exc))
            return False
        self.hashers = _hashers(self.source, self.digest)
        self.decoder = StreamDecoder(plan, max_out=settings.chunk_bytes)
        self.mode = "store"  # the caller waits for the end (``decided`` is set then): one wake-up per file
        return True

    def _write(self, data: bytes) -> int | None:
        self.last_activity = time.monotonic()
        if self.mode == "store":
            try:
                for chunk in self.decoder.feed(data):  # type: ignore[union-attr]
                    if not self._store(chunk):
                        return 0
            except CorruptEncoding as exc:
                return self._fail(PermanentFetchError(self.url, f"could not decode the body ({exc})",
                                                      status=self.status))
            return None
        if self.mode == "probe":
            return self._write_first(data)
        self.discarded += len(data)
        return None if self.discarded <= _MAX_ERROR_BODY else 0

    def _store(self, chunk: bytes) -> bool:
        limit = self.fetcher.settings.max_file_bytes
        self.received += len(chunk)
        if self.received > limit:  # decoded bytes: a small gzip body can expand without bound
            self._fail(PermanentFetchError(self.url, f"too large: body exceeds max_file_bytes {limit}",
                                           status=self.status))
            return False
        try:
            self.dest.write(chunk)
        except OSError as exc:
            self._fail(_SinkFailed(exc))
            return False
        for hasher in self.hashers.values():
            hasher.update(chunk)
        return True

    def _write_first(self, data: bytes) -> int | None:
        """A ranged download's probe: its first ``first.length`` bytes are part 0, then it stops."""
        sink, part = self.sink, self.first
        if sink is None or part is None:
            return 0
        take = data[: part.stop - self.offset]
        try:
            sink.write_at(self.offset, take)
        except OSError as exc:
            return self._fail(_SinkFailed(exc))
        except PartsCancelled:
            return 0
        self.offset += len(take)
        return None if self.offset < part.stop else 0

    def outcome(self, done: Done) -> _Body | _Redirect:
        url, status = self.url, self.status
        if self.mode == "probe" and self.first is not None and self.offset >= self.first.stop:
            return _Body(self.first.length, None, None)  # part 0 complete; the transfer was stopped on purpose
        if done.code != 0:
            self.raise_transport(done)
        if status == 304 and self.conditional:
            return _Body(0, self.headers.get("etag"), self.headers.get("last-modified"), not_modified=True)
        if 300 <= status < 400 and status != 304:
            location = self.headers.get("location")
            if location:
                return _Redirect(done.redirect_url or urljoin(self.hop, location.strip()))
        if status == 206 or not 200 <= status < 300:
            raise _status_error(url, status, done.retry_after_s)
        if self.mode == "probe":  # stopped before part 0 was whole: the body ended early
            raise RetryableFetchError(url, f"body ended after {self.offset} bytes of the first part", status=status)
        try:
            for chunk in self.decoder.finish():  # type: ignore[union-attr]
                if not self._store(chunk):
                    raise self.error  # type: ignore[misc]
        except TruncatedEncoding as exc:
            raise RetryableFetchError(url, str(exc), status=status) from None
        except CorruptEncoding as exc:
            raise PermanentFetchError(url, f"could not decode the body ({exc})", status=status) from None
        digests = {name: hasher.hexdigest() for name, hasher in self.hashers.items()}
        _check_integrity(self.source, self.received, digests, status)
        return _Body(self.received, self.headers.get("etag"), self.headers.get("last-modified"),
                     sha256=digests.get("sha256"), content_type=self.headers.get("content-type"))


class _PartRequest(_Request):
    """One ranged request for one part, written at its offset."""

    def __init__(self, fetcher: CurlFetcher, url: str, hop: str, pins: tuple[str, int, tuple[str, ...]] | None,
                 timeout_s: float, part: Part, sink: OffsetSink, expected: tuple[str | None, str | None, int]):
        super().__init__(fetcher, url, hop, pins, timeout_s, [f"Range: {part.header}", "Accept-Encoding: identity"])
        self.part = part
        self.sink = sink
        self.expected = expected
        self.offset = part.start
        self.verdict: BaseException | None = None
        self.writing = False

    def _headers_done(self) -> bool:
        try:
            _check_part(self.url, self.status, self.headers, self.part, self.expected)
        except (_RangeIgnored, _ValidatorChanged, FetchError) as exc:
            self.verdict = exc
            return False
        self.writing = True
        return True

    def _write(self, data: bytes) -> int | None:
        self.last_activity = time.monotonic()
        if not self.writing:
            return 0
        take = data[: self.part.stop - self.offset]
        try:
            self.sink.write_at(self.offset, take)
        except OSError as exc:
            return self._fail(_SinkFailed(exc))
        except PartsCancelled as exc:
            return self._fail(exc)
        self.offset += len(take)
        return None if len(take) == len(data) else 0

    def outcome(self, done: Done) -> None:
        if self.verdict is not None:
            raise self.verdict
        if self.writing and self.offset >= self.part.stop:
            return
        if done.code != 0:
            self.raise_transport(done)
        got = self.offset - self.part.start
        raise RetryableFetchError(
            self.url, f"part {self.part.header} ended after {got} of {self.part.length} bytes", status=self.status
        )


class CurlFetcher:
    """``fanfetch.ports.Fetcher`` over HTTP(S) on libcurl. Thread-safe: share one per process; each
    caller thread waits on its own transfer while the engine's I/O thread moves every byte."""

    def __init__(
        self,
        settings: HttpSettings = HttpSettings(),  # noqa: B008 - frozen, so sharing the default is safe
        *,
        clock: Clock | None = None,
        guard: AddressGuard | None = None,
        rand: Callable[[], float] = random.random,
    ):
        self.settings = settings
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rand = rand
        self._guard = guard if guard is not None else AddressGuard()
        self._engine = CurlEngine(max_connections=max(settings.pool_size, settings.connections_per_file))
        self._gate = (
            HostGate(concurrency=settings.per_host_concurrency, rps=settings.per_host_rps, clock=self._clock)
            if settings.polite
            else None
        )
        self.ca_bundle = _ca_bundle(settings)
        self.base_headers = [f"User-Agent: {settings.user_agent}", f"Accept-Encoding: {ACCEPT_ENCODING}"]
        self._parts: Any = None
        self._closed = False
        self._cancelled = False
        self._wake = threading.Event()
        self._literal_pins: dict[tuple[str, int], tuple[str, int, tuple[str, ...]]] = {}
        self._resolve_lists: dict[tuple[str, int, tuple[str, ...]], list[str]] = {}
        self._pin_keys: dict[str, tuple[str, int]] = {}  # scheme://authority -> (host, port)
        self._slots_lock = threading.Lock()
        self._in_flight = 0  # fetch_async files running (each holds a slot until its future is done)
        self._waiting: deque[_AsyncFile] = deque()
        self._slow: Any = None

    def set_constant_options(self, easy: pycurl.Curl) -> None:
        """The options every request of this fetcher shares (set once per handle)."""
        settings = self.settings
        easy.setopt(pycurl.NOSIGNAL, 1)
        easy.setopt(pycurl.PROTOCOLS, _PROTOCOLS)
        easy.setopt(pycurl.REDIR_PROTOCOLS, _PROTOCOLS)
        easy.setopt(pycurl.FOLLOWLOCATION, 0)  # hops are followed by fetch(): each one guarded and pinned
        easy.setopt(pycurl.PROXY, "")  # never a proxy from the environment: it would dial past the guard
        easy.setopt(pycurl.HTTP_CONTENT_DECODING, 0)  # fanfetch.core.encoding decodes what we advertise
        if settings.low_speed_bytes_per_s:
            easy.setopt(pycurl.LOW_SPEED_LIMIT, settings.low_speed_bytes_per_s)
            easy.setopt(pycurl.LOW_SPEED_TIME, settings.low_speed_time_s)
        easy.setopt(pycurl.MAXFILESIZE_LARGE, settings.max_file_bytes)
        easy.setopt(pycurl.BUFFERSIZE, min(settings.chunk_bytes, _MAX_BUFFER))
        easy.setopt(pycurl.TCP_KEEPALIVE, 1)
        if self.ca_bundle:
            easy.setopt(pycurl.CAINFO, self.ca_bundle)

    def resolve_list(self, pins: tuple[str, int, tuple[str, ...]] | None) -> list[str]:
        """CURLOPT_RESOLVE for a hop: its host and port pinned to the addresses the guard approved."""
        if pins is None:
            return []
        listed = self._resolve_lists.get(pins)
        if listed is None:
            host, port, addresses = pins
            joined = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
            listed = [f"{host}:{port}:{joined}"]
            if len(self._resolve_lists) < _LITERAL_PINS:
                self._resolve_lists[pins] = listed
        return listed

    def __enter__(self) -> CurlFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def gate(self) -> HostGate | None:
        return self._gate

    @property
    def engine(self) -> CurlEngine:
        return self._engine

    def cancel(self) -> None:
        """Abort every transfer in flight (a second Ctrl-C): each fetch fails retryable at once, without
        retrying, and so does every later one."""
        self._cancelled = True
        self._wake.set()  # a backoff pause in progress ends now
        self._engine.cancel_all()

    def close(self) -> None:
        """Stop the engine's I/O thread and the part threads; later fetches raise RuntimeError."""
        self._closed = True
        self._engine.close()
        for pool in (self._parts, self._slow):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._parts = self._slow = None

    def fetch(
        self,
        source: Source,
        dest: BinaryIO,
        *,
        deadline: float | None = None,
        validator: Validator | None = None,
        digest: bool = False,
    ) -> FileResult:
        """Download ``source`` into ``dest``: see ``fanfetch.ports.Fetcher``. Raises FetchError subclasses
        (each naming the URL, last status and attempts); an ``OSError`` writing ``dest`` propagates as is."""
        end, validator = self._prepare(source, deadline, validator)
        return self._fetch(source, dest, end, validator, digest, [])

    def _prepare(self, source: Source, deadline: float | None,
                 validator: Validator | None) -> tuple[float, Validator | None]:
        if self._closed:
            raise RuntimeError("CurlFetcher is closed")
        end = self._clock.monotonic() + self.settings.file_deadline_s
        if deadline is not None:
            end = min(end, deadline)
        if validator is not None and validator.url != source.url:
            validator = None  # another URL's validators would skip the wrong file
        return end, validator

    def _fetch(self, source: Source, dest: BinaryIO, end: float, validator: Validator | None, digest: bool,
               first: list[tuple[_Stream, Callable[[], Any]]]) -> FileResult:
        """The attempt loop; ``first`` may hold attempt 1's first request, already sent (fetch_async)."""
        settings, clock, url = self.settings, self._clock, source.url
        attempts = 0
        extra_requests = [0]
        ranged = settings.connections_per_file > 1
        restart_allowed = True
        while True:
            if not first:
                if self._cancelled:
                    raise RetryableFetchError(url, "download cancelled: the run is aborting", attempts=attempts)
                if clock.monotonic() >= end:
                    raise RetryableFetchError(url, "deadline passed before the download could start",
                                              attempts=attempts)
            attempts += 1
            if attempts > 1:
                dest.seek(0)
                dest.truncate()
            try:
                body = self._attempt(source, dest, end, validator, ranged, extra_requests, digest, first)
            except _DeadlinePassed:
                raise RetryableFetchError(url, "deadline exceeded", attempts=attempts) from None
            except _Cancelled:
                raise RetryableFetchError(url, "download cancelled: the run is aborting",
                                          attempts=attempts + extra_requests[0]) from None
            except _SinkFailed as exc:
                raise exc.error from None
            except HostWaitTooLong as exc:
                raise exc.error.with_attempts(attempts + extra_requests[0]) from None
            except _PartFailed as exc:
                raise exc.error.with_attempts(attempts + extra_requests[0]) from None
            except _RangeIgnored:
                ranged = False
                continue
            except _ValidatorChanged:
                if restart_allowed:
                    restart_allowed = False
                    continue
                raise RetryableFetchError(
                    url, "the file changed during a ranged download (parts disagree on ETag/Last-Modified/size)",
                    attempts=attempts + extra_requests[0],
                ) from None
            except PermanentFetchError as exc:
                raise exc.with_attempts(attempts) from None
            except RetryableFetchError as exc:
                if attempts >= settings.max_attempts:
                    raise exc.with_attempts(attempts) from None
                self._back_off(exc, attempts, end)
                continue
            return FileResult(
                url, body.size, attempts + extra_requests[0], etag=body.etag, last_modified=body.last_modified,
                not_modified=body.not_modified, sha256=body.sha256 if digest else None,
                content_type=body.content_type,
            )

    def _stream(self, source: Source, hop: str, conditional: list[str], dest: BinaryIO, digest: bool,
                ranged: bool) -> _Stream:
        return _Stream(self, source, hop, None, 0.0, conditional, dest, digest, bool(conditional),
                       self._rangeable if ranged else None)

    # --- fetch_async: no thread per file -------------------------------------------------------------------

    def fetch_async(
        self,
        source: Source,
        dest: BinaryIO,
        *,
        deadline: float | None = None,
        validator: Validator | None = None,
        digest: bool = False,
        before: Callable[[], None] | None = None,
    ) -> Future[FileResult]:
        """``fetch`` without a waiting thread: the same outcome, as a Future. At most ``pool_size`` files run at
        once (later ones wait in order; a queued future can still be cancelled). ``before`` runs as the file
        starts and may raise to fail it. A first attempt that ends well completes on the engine's I/O thread;
        anything else (an error, a redirect, a ranged download, politeness) continues as ``fetch`` on a thread."""
        future: Future[FileResult] = Future()
        item = _AsyncFile(future, source, dest, deadline, validator, digest, before)
        with self._slots_lock:
            if self._in_flight >= self.settings.pool_size:
                self._waiting.append(item)
                return future
            self._in_flight += 1
        self._run_started(item)
        return future

    def _run_started(self, item: _AsyncFile | None) -> None:
        """Begin ``item`` (it holds a slot); when it ends at once, hand its slot on to the next in line."""
        while item is not None:
            if self._begin(item):
                return
            item = self._next_in_line()

    def _next_in_line(self) -> _AsyncFile | None:
        with self._slots_lock:
            if self._waiting:
                return self._waiting.popleft()  # the slot passes on
            self._in_flight -= 1
            return None

    def _end_async(self, item: _AsyncFile, result: FileResult | None, error: BaseException | None) -> None:
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)  # type: ignore[arg-type]
        self._run_started(self._next_in_line())

    def _begin(self, item: _AsyncFile) -> bool:
        """Send ``item``'s first request; False when it already ended (cancelled, refused, failed)."""
        if not item.future.set_running_or_notify_cancel():
            return False
        source = item.source
        try:
            if item.before is not None:
                item.before()
            end, validator = self._prepare(source, item.deadline, item.validator)
            item.end, item.validator = end, validator
            pins = self._literal_pin(source.url) if self._gate is None else None
            if pins is None:  # DNS (the guard resolves, blocking) or politeness (may wait): on a thread
                self._continue(item, [])
                return True
            if self._cancelled:
                raise RetryableFetchError(source.url, "download cancelled: the run is aborting", attempts=0)
            remaining = end - self._clock.monotonic()
            if remaining <= 0:
                raise RetryableFetchError(source.url, "deadline passed before the download could start", attempts=0)
            request = self._stream(source, source.url, _conditional_headers(validator), item.dest, item.digest,
                                   self.settings.connections_per_file > 1)
            request.pins, request.timeout_s = pins, remaining
            read_timeout = self.settings.read_timeout_s
            request.silence_s = read_timeout if read_timeout < remaining else None
            request.on_probe = partial(self._probe_goes_on, item, request)
            self._engine.start(request, partial(self._first_done, item, request))
        except BaseException as exc:  # noqa: BLE001 - the file's outcome, as fetch would raise it
            item.future.set_exception(exc)
            return False
        return True

    def _probe_goes_on(self, item: _AsyncFile, request: _Stream) -> None:
        """A ranged download's probe decided (I/O thread, at its headers): the parts go on on a thread now."""
        ended = request.ended = threading.Event()

        def resume() -> Any:
            ended.wait()
            return request.outcome(request.done)  # type: ignore[arg-type]

        self._continue(item, [(request, resume)])

    def _literal_pin(self, url: str) -> tuple[str, int, tuple[str, ...]] | None:
        """The guard's remembered verdict for an IP-literal host (checked now if new); None for a host name
        (DNS may block: a thread resolves it) or a refused address (``fetch`` reports it as ever)."""
        slash = url.find("/", url.find("//") + 2)
        origin = url[:slash] if slash > 0 else url
        key = self._pin_keys.get(origin)
        if key is None:
            key = _pin_key(origin)
            if key is None:
                return None
            if len(self._pin_keys) < _LITERAL_PINS and "?" not in origin and "#" not in origin:
                self._pin_keys[origin] = key
        pins = self._literal_pins.get(key)
        if pins is not None:
            return pins
        try:
            ipaddress.ip_address(key[0])
            return self._pins(url, url)
        except (ValueError, FetchError):
            return None

    def _first_done(self, item: _AsyncFile, request: _Stream, done: Done) -> None:
        """The first request ended (I/O thread): a plain body completes the file here; anything else goes on."""
        try:
            self._judge_first(item, request, done)
        except BaseException as exc:  # noqa: BLE001 - a bug here must not leave the file's future waiting
            if not item.future.done():
                self._end_async(item, None, exc)

    def _judge_first(self, item: _AsyncFile, request: _Stream, done: Done) -> None:
        request.done = done
        if request.ended is not None:
            request.ended.set()
            return  # a probe: continued on a thread at its headers
        try:
            outcome: Any = request.outcome(done)
        except BaseException as exc:  # noqa: BLE001 - judged by the attempt loop, as fetch would
            error = exc

            def again() -> Any:
                raise error

            self._continue(item, [(request, again)])
            return
        if not isinstance(outcome, _Body) or (outcome.not_modified and item.validator is not None):
            self._continue(item, [(request, lambda: outcome)])
            return
        self._end_async(item, FileResult(
            item.source.url, outcome.size, 1, etag=outcome.etag, last_modified=outcome.last_modified,
            not_modified=outcome.not_modified, sha256=outcome.sha256 if item.digest else None,
            content_type=outcome.content_type,
        ), None)

    def _continue(self, item: _AsyncFile, first: list[tuple[_Stream, Callable[[], Any]]]) -> None:
        """Go on as ``fetch`` does, on a thread of its own (retries, redirects, ranged parts, DNS)."""
        for request, _ in first:
            request.decided = _DECIDED

        def run() -> None:
            try:
                if first:
                    result = self._fetch(item.source, item.dest, item.end, item.validator, item.digest, first)
                else:
                    result = self.fetch(item.source, item.dest, deadline=item.deadline, validator=item.validator,
                                        digest=item.digest)
            except BaseException as exc:  # noqa: BLE001 - the file's outcome
                self._end_async(item, None, exc)
                return
            self._end_async(item, result, None)

        self._slow_pool().submit(run)

    def _slow_pool(self) -> Any:
        with self._slots_lock:
            if self._slow is None:
                from concurrent.futures import ThreadPoolExecutor

                self._slow = ThreadPoolExecutor(max_workers=self.settings.pool_size, thread_name_prefix="fanfetch-file")
            return self._slow

    def _back_off(self, error: RetryableFetchError, attempts: int, end: float) -> None:
        """Sleep before the next attempt, or raise if that would end past the deadline."""
        settings, clock = self.settings, self._clock
        now = clock.monotonic()
        delay = backoff_delay(attempts, base_s=settings.backoff_base_s, max_s=settings.backoff_max_s, rand=self._rand)
        retry_after = error.retry_after_s
        if retry_after is not None:
            if now + retry_after > end:
                raise RetryAfterTooLong(
                    error.url,
                    f"{error.reason}: the server asked to retry after {retry_after:g} s, past the deadline",
                    status=error.status, attempts=attempts, retry_after_s=retry_after,
                ) from None
            delay = max(delay, min(retry_after, settings.backoff_max_s))
        if now + delay >= end:
            raise error.with_attempts(attempts) from None
        if isinstance(clock, SystemClock):
            self._wake.wait(delay)  # real time: a cancel() ends the pause at once
        else:
            clock.sleep(delay)

    def _attempt(self, source: Source, dest: BinaryIO, end: float, validator: Validator | None, ranged: bool,
                 extra_requests: list[int], digest: bool,
                 first: list[tuple[_Stream, Callable[[], Any]]] | None = None) -> _Body:
        """One attempt: follow redirect hops (each guarded, pinned, counted), then the body."""
        url, hop = source.url, source.url
        seen = {hop}
        conditional = _conditional_headers(validator)
        for _ in range(self.settings.max_redirects + 1):
            if first:
                request, waiting = first.pop()  # already sent by fetch_async
            else:
                request = self._stream(source, hop, conditional, dest, digest, ranged)
                waiting = self._submit(request, end)
            request.decided.wait()  # type: ignore[union-attr]
            if request.mode == "probe":
                return self._receive_ranged(source, request, waiting, hop, end, extra_requests, digest)
            result = waiting()
            if isinstance(result, _Body):
                if result.not_modified and validator is not None:
                    return _Body(0, result.etag or validator.etag, result.last_modified or validator.last_modified,
                                 not_modified=True)
                return result
            target = result.target.split("#", 1)[0]
            if urlsplit(target).scheme not in ("http", "https"):
                raise PermanentFetchError(url, f"redirect to a non-HTTP URL: {target}", status=request.status)
            if target in seen:
                raise PermanentFetchError(url, f"redirect loop at {target}", status=request.status)
            seen.add(target)
            hop = target
        raise PermanentFetchError(url, f"more than {self.settings.max_redirects} redirects")

    def _pins(self, url: str, hop: str) -> tuple[str, int, tuple[str, ...]]:
        parts = urlsplit(hop)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise PermanentFetchError(url, f"invalid URL (bad port in {hop})") from None
        host = parts.hostname or ""
        if not host:
            raise PermanentFetchError(url, "URL has no host")
        literal = self._literal_pins.get((host, port))
        if literal is not None:
            return literal
        try:
            addresses = self._guard.resolve(host, port)
        except FetchError as exc:
            reason = exc.reason if hop == url else f"redirected to {hop}: {exc.reason}"
            raise type(exc)(url, reason, status=exc.status) from None
        pins = host, port, tuple(normalise_ip(a) for a in addresses)
        if normalise_ip(host) == pins[2][0] and len(self._literal_pins) < _LITERAL_PINS:
            self._literal_pins[(host, port)] = pins  # an IP literal: no DNS, the guard's verdict cannot change
        return pins

    def _run(self, request: _Request, end: float) -> Any:
        """Admit, pin, submit and wait for one request; return its outcome."""
        return self._submit(request, end)()

    def _submit(self, request: _Request, end: float) -> Callable[[], Any]:
        """Admit (politeness), pin (guard) and submit one request; return the function that waits for
        it, frees its host slot and returns its outcome (or raises)."""
        gate, release, host = self._gate, None, ""
        if gate is not None:
            host = _host_of(request.hop)
            release = gate.enter(host, url=request.url, end=end)
        try:
            request.pins = self._pins(request.url, request.hop)
            remaining = end - self._clock.monotonic()
            if remaining <= 0:
                raise _DeadlinePassed()
            request.timeout_s = remaining
            read_timeout = self.settings.read_timeout_s
            request.silence_s = read_timeout if read_timeout < remaining else None
            if isinstance(request, _Stream):
                request.decided = threading.Event()
            future = self._engine.submit(request)
        except BaseException:
            if release is not None:
                release()
            raise
        if isinstance(request, _Stream):
            decided = request.decided
            future.add_done_callback(lambda _: decided.set())  # type: ignore[union-attr]

        def wait() -> Any:
            try:
                done = future.result()
                if gate is not None and request.status:
                    gate.record(host, request.status, retry_after_s=done.retry_after_s)
                return request.outcome(done)  # type: ignore[attr-defined]
            finally:
                if release is not None:
                    release()

        return wait

    # --- ranged downloads ------------------------------------------------------------------------------

    def _rangeable(self, request: _Stream) -> bool:
        """Called at the probe's headers (I/O thread): worth splitting? Then open the sink for part 0."""
        settings, headers = self.settings, request.headers
        declared = _content_length(headers)
        if not (request.status == 200 and declared is not None
                and settings.ranged_min_file_bytes <= declared <= settings.max_file_bytes
                and "bytes" in headers.get("accept-ranges", "").lower()
                and headers.get("content-encoding", "identity").strip().lower() in ("", "identity")):
            return False
        source = request.source
        if source.size is not None and source.size != declared:
            return False  # one stream: it fails the size check with the usual reason
        try:
            # digest: the file is stored as it is (the store fsyncs it), so it is written behind to disk
            sink = OffsetSink.open(request.dest, size=declared, need_read=bool(_hash_names(source, request.digest)),
                                   write_behind=request.digest)
        except OSError as exc:
            request._fail(_SinkFailed(exc))
            return False
        if sink is None:
            return False
        parts = plan_parts(declared, part_bytes=settings.part_bytes, connections=settings.connections_per_file,
                           min_rounds=_HASHED_ROUNDS)
        names = _hash_names(source, request.digest)
        request.follower = sink.follow(parts, names, chunk_bytes=settings.chunk_bytes) if names else None
        request.sink, request.first = sink, parts[0]
        return True

    def _receive_ranged(self, source: Source, probe: _Stream, waiting: Callable[[], Any], hop: str, end: float,
                        extra_requests: list[int], digest: bool) -> _Body:
        """Part 0 arrives on the probe (still running); the other parts as ranged transfers written at
        their offsets, in parallel; hashed (when asked or checked) by a thread following the prefix."""
        settings, url, sink = self.settings, source.url, probe.sink
        assert sink is not None
        total = _content_length(probe.headers)
        assert total is not None
        etag, last_modified = probe.headers.get("etag"), probe.headers.get("last-modified")
        connections = settings.connections_per_file
        parts = plan_parts(total, part_bytes=settings.part_bytes, connections=connections, min_rounds=_HASHED_ROUNDS)
        follower = probe.follower
        requests_made = [0]

        def first(part: Part) -> None:
            waiting()  # raises when the probe ended before part 0 was whole

        def fetch_part(part: Part) -> None:
            self._run(_PartRequest(self, url, hop, None, 0.0, part, sink, (etag, last_modified, total)), end)

        try:
            try:
                download_parts(
                    parts, sink=sink, connections=connections, executor=self._part_pool(),
                    first=first, fetch_part=fetch_part,
                    back_off=lambda error, attempt: self._back_off(error, attempt, end),
                    max_attempts=settings.max_attempts, requests_made=requests_made,
                )
            except RetryableFetchError as exc:
                raise _PartFailed(exc) from None
            finally:
                extra_requests[0] += requests_made[0]
            try:
                digests = follower.result() if follower is not None else {}
                sink.finish(total)
            except OSError as exc:
                raise _SinkFailed(exc) from exc
        finally:
            sink.cancelled.set()  # a probe still writing stops at its next write
            sink.close()
        _check_integrity(source, total, digests, 206)
        return _Body(total, etag, last_modified, sha256=digests.get("sha256"),
                     content_type=probe.headers.get("content-type"))

    def _part_pool(self) -> Any:
        if self._parts is None:
            from concurrent.futures import ThreadPoolExecutor

            self._parts = ThreadPoolExecutor(
                max_workers=max(self.settings.pool_size, self.settings.connections_per_file),
                thread_name_prefix="fanfetch-part",
            )
        return self._parts


def _content_length(headers: dict[str, str]) -> int | None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None  # chunked wins over a Content-Length sent beside it (RFC 9112 section 6.3)
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _status_error(url: str, status: int, retry_after_s: float | None) -> FetchError:
    if is_retryable_status(status):
        return RetryableFetchError(url, f"HTTP {status}", status=status, retry_after_s=retry_after_s)
    if 300 <= status < 400:
        return PermanentFetchError(url, f"HTTP {status} without a usable Location", status=status)
    if status == 206:
        return PermanentFetchError(url, "HTTP 206 Partial Content to a request without Range", status=status)
    return PermanentFetchError(url, f"HTTP {status}", status=status)


def _conditional_headers(validator: Validator | None) -> list[str]:
    if validator is None:
        return []
    headers = []
    if validator.etag:
        headers.append(f"If-None-Match: {validator.etag}")
    if validator.last_modified:
        headers.append(f"If-Modified-Since: {validator.last_modified}")
    return headers


def _pin_key(url: str) -> tuple[str, int] | None:
    """(host, port) as ``CurlFetcher._pins`` keys its remembered verdicts; None for a URL it would refuse."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname or "", port)


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def _hash_names(source: Source, digest: bool) -> tuple[str, ...]:
    return tuple(
        name
        for name, wanted in (("sha256", digest or source.sha256 is not None), ("md5", source.md5 is not None))
        if wanted
    )


def _hashers(source: Source, digest: bool) -> dict[str, Any]:
    return {name: hashlib.new(name, usedforsecurity=False) for name in _hash_names(source, digest)}


def _check_integrity(source: Source, received: int, digests: dict[str, str], status: int) -> None:
    url = source.url
    if source.size is not None and received != source.size:
        raise RetryableFetchError(url, f"size mismatch: expected {source.size} bytes, got {received}", status=status)
    for name, actual in digests.items():
        expected = getattr(source, name)
        if expected is not None and actual != str(expected).lower():
            raise RetryableFetchError(url, f"checksum mismatch: {name} expected {expected}, got {actual}",
                                      status=status)


def _check_part(url: str, status: int, headers: dict[str, str], part: Part,
                expected: tuple[str | None, str | None, int]) -> None:
    """A part's response must be exactly that part of the very file the probe saw."""
    etag, last_modified, total = expected
    if status == 416:
        raise _ValidatorChanged()
    if status != 206:
        if 200 <= status < 400:
            raise _RangeIgnored()
        raise _status_error(url, status, None)
    span = parse_content_range(headers.get("content-range"))
    if span is None or span[:2] != (part.start, part.stop):
        raise _RangeIgnored()
    if span[2] is not None and span[2] != total:
        raise _ValidatorChanged()
    for mine, theirs in ((etag, headers.get("etag")), (last_modified, headers.get("last-modified"))):
        if mine is not None and theirs is not None and mine != theirs:
            raise _ValidatorChanged()
    if headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        raise _RangeIgnored()

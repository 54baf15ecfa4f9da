"""Downloads one URL into a file object: pooled requests session, own retry loop bounded by a
per-file deadline, a watchdog that cuts trickling or stalled bodies, size and checksum checks, the
SSRF guard on every redirect hop, conditional requests, per-host politeness, and large files over
ranged connections. requests/urllib3 errors become ``fanfetch.errors`` here.
"""

from __future__ import annotations

import hashlib
import heapq
import http.client
import itertools
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from urllib3.connection import HTTPConnection
from urllib3.util.ssl_match_hostname import CertificateError

from fanfetch import __version__
from fanfetch.adapters.clock import SystemClock
from fanfetch.adapters.guard import AddressGuard, PinnedAdapter
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
from fanfetch.core.retry import backoff_delay, is_retryable_status, parse_retry_after
from fanfetch.errors import FetchError, PermanentFetchError, RetryableFetchError, RetryAfterTooLong
from fanfetch.ports import Clock

__all__ = ["HttpSettings", "HttpFetcher"]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_COMPACT_AT = 4096  # watchdog heap entries before disarmed alarms are swept out
_MIB = 2**20
_MAX_CONNECTIONS_PER_FILE = 16  # default cap of ranged connections per file (aria2c's -x maximum)


@dataclass(frozen=True)
class HttpSettings:
    """Every knob of the HTTP adapter, validated once; the unit is in each name."""

    connect_timeout_s: float = 10.0  # per connection attempt (TCP + TLS handshake)
    read_timeout_s: float = 60.0  # longest silence allowed between two reads of one response
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


class _DeadlinePassed(Exception):
    """Internal: the file's deadline passed during an attempt; no further attempt may start."""


class _SinkFailed(Exception):
    """Internal: writing to ``dest`` failed; that is the caller's disk, not the network."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


class _Alarm:
    """One attempt's deadline: when it fires, the socket of the connection in use is shut down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: HTTPConnection | None = None
        self._done = False
        self.fired = False

    def watch(self, conn: HTTPConnection | None) -> None:
        """Cut ``conn`` (the connection now carrying this attempt) when the alarm fires."""
        with self._lock:
            self._conn = conn
            if conn is not None:
                # urllib3 hands a fully read connection back to the pool before we disarm; the
                # owner mark lets a thread that takes it next claim it, so we never cut theirs.
                conn._fanfetch_alarm = self  # type: ignore[attr-defined]
                if self.fired:
                    _shutdown(conn)

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            conn = self._conn
            if conn is not None and getattr(conn, "_fanfetch_alarm", None) is self:
                _shutdown(conn)

    def disarm(self) -> bool:
        """Stop the alarm; True if it had fired. Once this returns the socket is left alone."""
        with self._lock:
            self._done = True
            return self.fired


def _shutdown(conn: HTTPConnection) -> None:
    sock = getattr(conn, "live_socket", None) or getattr(conn, "sock", None)
    if sock is None:
        return
    try:
        # socket.socket.shutdown, not SSLSocket.shutdown: wake a blocked reader without touching TLS state.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Watchdog:
    """One timer thread for all of a fetcher's alarms (a thread per download would cost more).

    It exists because requests' read timeout never fires on a body that trickles a byte at a
    time, and urllib3 2's ``read(amt)`` blocks until ``amt`` bytes arrive.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, delay_s: float) -> _Alarm:
        alarm = _Alarm()
        with self._cond:
            if self._closed:
                raise RuntimeError("HttpFetcher is closed")
            if len(self._heap) >= _COMPACT_AT:  # disarmed alarms wait for their time otherwise
                self._heap = [entry for entry in self._heap if not entry[2]._done]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), next(self._seq), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fanfetch-http-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return alarm

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    while self._heap and self._heap[0][2]._done:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait_s = self._heap[0][0] - time.monotonic()
                    if wait_s <= 0:
                        alarm = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(wait_s)
            alarm.fire()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


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
    sha256: str | None = None  # of the bytes stored, when hashed on the way
    content_type: str | None = None  # the response's Content-Type (csv merge refuses text/html)


class HttpFetcher:
    """``fanfetch.ports.Fetcher`` over HTTP(S). Thread-safe: share one per process (a warm Lambda
    container keeps its pooled connections), with at most ``settings.pool_size`` threads."""

    def __init__(
        self,
        settings: HttpSettings = HttpSettings(),  # noqa: B008 - frozen, so sharing the default is safe
        *,
        clock: Clock | None = None,
        guard: AddressGuard | None = None,
        rand: Callable[[], float] = random.random,
    ):
        self._settings = settings
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rand = rand
        self._local = threading.local()
        self._watchdog = _Watchdog()
        self._gate = (
            HostGate(concurrency=settings.per_host_concurrency, rps=settings.per_host_rps, clock=self._clock)
            if settings.polite
            else None
        )
        self._parts_lock = threading.Lock()
        self._parts: ThreadPoolExecutor | None = None
        self._verify: bool | str = (
            settings.ca_bundle
            or os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or True
        )
        adapter = PinnedAdapter(
            guard if guard is not None else AddressGuard(),
            pool_connections=settings.pool_size,
            pool_maxsize=settings.pool_size,
            pool_block=True,
            on_request=self._watch_connection,
        )
        # Requests go straight to the adapter, not through a requests.Session: no cookies are
        # kept between downloads, no proxies or ~/.netrc are read (a proxy would bypass the guard).
        self._adapter = adapter
        self._headers = {"User-Agent": settings.user_agent, "Accept-Encoding": ACCEPT_ENCODING}

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def gate(self) -> HostGate | None:
        """The per-host politeness gate (None when no per-host limit is set)."""
        return self._gate

    def close(self) -> None:
        """Close pooled connections and stop the watchdog and part threads."""
        self._adapter.close()
        self._watchdog.close()
        with self._parts_lock:
            parts, self._parts = self._parts, None
        if parts is not None:
            parts.shutdown(wait=True, cancel_futures=True)

    def fetch(
        self,
        source: Source,
        dest: BinaryIO,
        *,
        deadline: float | None = None,
        validator: Validator | None = None,
        digest: bool = False,
    ) -> FileResult:
        """Download ``source`` into ``dest`` (rewound and truncated before an attempt writes).

        ``deadline`` is an absolute ``clock.monotonic()`` value; the file's own budget
        (``file_deadline_s`` from now) applies too, whichever ends first. With a ``validator``
        from an earlier run the request is conditional, and a 304 returns ``not_modified=True``
        with ``bytes=0``, leaving ``dest`` as it was. Files of at least ``ranged_min_file_bytes``
        from an origin that accepts ranges are fetched over ``connections_per_file`` ranged
        connections; ``attempts`` then counts every request, parts included. Raises FetchError
        subclasses only, each carrying the source URL, the last HTTP status and the attempts made;
        an ``OSError`` from writing ``dest`` (a full disk) is not the network's and propagates as is.

        With ``digest`` the result's ``sha256`` is that of the bytes left in ``dest`` (the final
        attempt's), computed while they arrive: a stream as it is written, ranged parts by a thread
        that follows the contiguous prefix. The manifest's sha256/md5 are checked on the same pass.
        """
        settings, clock, url = self._settings, self._clock, source.url
        end = clock.monotonic() + settings.file_deadline_s
        if deadline is not None:
            end = min(end, deadline)
        if validator is not None and validator.url != url:
            validator = None  # another URL's validators would skip the wrong file
        attempts = 0
        extra_requests = [0]  # part requests beyond one per attempt, added by ranged downloads
        ranged = settings.connections_per_file > 1
        restart_allowed = True
        while True:
            if clock.monotonic() >= end:
                raise RetryableFetchError(
                    url, "deadline passed before the download could start", attempts=attempts
                )
            attempts += 1
            if attempts > 1:
                dest.seek(0)
                dest.truncate()
            try:
                body = self._attempt(source, dest, end, validator, ranged, extra_requests, digest)
            except _DeadlinePassed:
                raise RetryableFetchError(url, "deadline exceeded", attempts=attempts) from None
            except HostWaitTooLong as exc:
                raise exc.error.with_attempts(attempts + extra_requests[0]) from None
            except _PartFailed as exc:
                raise exc.error.with_attempts(attempts + extra_requests[0]) from None
            except _RangeIgnored:
                ranged = False  # the origin said it takes ranges, then did not: one stream
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
                url,
                body.size,
                attempts + extra_requests[0],
                etag=body.etag,
                last_modified=body.last_modified,
                not_modified=body.not_modified,
                sha256=body.sha256 if digest else None,
                content_type=body.content_type,
            )

    def _back_off(self, error: RetryableFetchError, attempts: int, end: float) -> None:
        """Sleep before the next attempt, or raise if that would end past the deadline."""
        settings, clock = self._settings, self._clock
        now = clock.monotonic()
        delay = backoff_delay(
            attempts, base_s=settings.backoff_base_s, max_s=settings.backoff_max_s, rand=self._rand
        )
        retry_after = error.retry_after_s
        if retry_after is not None:
            if now + retry_after > end:
                raise RetryAfterTooLong(
                    error.url,
                    f"{error.reason}: the server asked to retry after {retry_after:g} s, past the deadline",
                    status=error.status,
                    attempts=attempts,
                    retry_after_s=retry_after,
                ) from None
            # Capped so that one origin cannot park a worker thread for long; the check above
            # already handed the work back when the server's wish does not fit the deadline.
            delay = max(delay, min(retry_after, settings.backoff_max_s))
        if now + delay >= end:
            raise error.with_attempts(attempts) from None
        clock.sleep(delay)

    def _attempt(
        self,
        source: Source,
        dest: BinaryIO,
        end: float,
        validator: Validator | None,
        ranged: bool,
        extra_requests: list[int],
        digest: bool,
    ) -> _Body:
        """One attempt under a watchdog alarm: follow redirects, then stream the body into ``dest``."""
        alarm = self._watchdog.arm(end - self._clock.monotonic())
        self._local.alarm = alarm
        opened: list[requests.Response] = []
        try:
            result = self._follow_redirects(source, dest, end, opened, validator, ranged, extra_requests, digest)
        except _SinkFailed as exc:
            alarm.disarm()
            raise exc.error from None
        except (FetchError, HostWaitTooLong, _RangeIgnored, _ValidatorChanged, _PartFailed):
            if alarm.disarm():
                raise _DeadlinePassed() from None
            raise
        except Exception as exc:
            if alarm.disarm():
                raise _DeadlinePassed() from None
            raise _translate(exc, source.url) from exc
        finally:
            self._local.alarm = None
            cut = alarm.disarm()  # from here on the watchdog leaves these connections alone
            for response in opened:
                self._dispose(response, cut)
        if cut:  # a close-delimited body cut by the watchdog can look complete: it is not
            raise _DeadlinePassed()
        return result

    def _follow_redirects(
        self,
        source: Source,
        dest: BinaryIO,
        end: float,
        opened: list[requests.Response],
        validator: Validator | None,
        ranged: bool,
        extra_requests: list[int],
        digest: bool,
    ) -> _Body:
        hop = source.url
        seen = {hop}
        headers = _conditional_headers(validator)
        for _ in range(self._settings.max_redirects + 1):
            response = self._send(source.url, hop, end, headers)
            opened.append(response)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECT_STATUSES or not location:
                if response.status_code == 304 and validator is not None:
                    return _Body(
                        0,
                        response.headers.get("ETag") or validator.etag,
                        response.headers.get("Last-Modified") or validator.last_modified,
                        not_modified=True,
                    )
                if ranged and self._rangeable(response):
                    return self._receive_ranged(source, response, hop, dest, end, extra_requests, digest)
                return self._receive(source, response, dest, digest)
            hop = _follow(source.url, hop, location, response.status_code)
            if hop in seen:
                raise PermanentFetchError(source.url, f"redirect loop at {hop}", status=response.status_code)
            seen.add(hop)
            # Give the connection back now: holding it while the next hop waits on a blocking
            # pool of the same origin could deadlock a full thread pool.
            self._local.alarm.watch(None)
            opened.remove(response)
            self._dispose(response, False)
        raise PermanentFetchError(source.url, f"more than {self._settings.max_redirects} redirects")

    def _send(self, url: str, hop: str, end: float, headers: dict[str, str] | None = None) -> requests.Response:
        gate, release = self._gate, None
        if gate is not None:
            host = _host_of(hop)
            release = gate.enter(host, url=url, end=end)  # may wait; raises HostWaitTooLong
        remaining = end - self._clock.monotonic()
        try:
            if remaining <= 0:
                raise _DeadlinePassed()
            timeout = (
                min(self._settings.connect_timeout_s, remaining),
                min(self._settings.read_timeout_s, remaining),
            )
            try:
                response = self._adapter.send(
                    _prepare(hop, self._headers, headers), stream=True, timeout=timeout, verify=self._verify
                )
            except FetchError as exc:  # raised by the guard inside the adapter, naming the hop
                reason = exc.reason if hop == url else f"redirected to {hop}: {exc.reason}"
                raise type(exc)(url, reason, status=exc.status) from None
        except BaseException:
            if release is not None:
                release()
            raise
        if gate is not None:
            response._fanfetch_release = release  # type: ignore[attr-defined]
            gate.record(host, response.status_code, retry_after_s=_retry_after(response))
        return response

    def _dispose(self, response: requests.Response, cut: bool) -> None:
        """Close ``response`` (dropping its connection if the watchdog cut it) and free its host slot."""
        try:
            if cut:
                response.raw.close()  # its socket is shut down: never hand it back to the pool
            response.close()
        finally:
            release = getattr(response, "_fanfetch_release", None)
            if release is not None:
                release()

    def _receive(self, source: Source, response: requests.Response, dest: BinaryIO, digest: bool) -> _Body:
        url, status, limit = source.url, response.status_code, self._settings.max_file_bytes
        if status == 206 or not 200 <= status < 300:
            raise _status_error(url, response)
        declared = _content_length(response)
        if declared is not None and declared > limit:
            raise PermanentFetchError(
                url, f"too large: Content-Length {declared} > max_file_bytes {limit}", status=status
            )
        try:
            plan = plan_body(url, response.headers.get("Content-Encoding"), response.headers.get("Content-Type"))
        except UnsupportedEncoding as exc:
            raise PermanentFetchError(url, str(exc), status=status) from None
        hashers = _hashers(source, digest)
        try:
            dest.seek(0)
            dest.truncate()
        except OSError as exc:
            raise _SinkFailed(exc) from exc
        decoder = StreamDecoder(plan, max_out=self._settings.chunk_bytes)
        received = wire = 0
        try:
            for raw in _raw_chunks(response, self._settings.chunk_bytes):
                wire += len(raw)
                for chunk in decoder.feed(raw):
                    received = self._store_chunk(url, status, chunk, received, dest, hashers)
            for chunk in decoder.finish():
                received = self._store_chunk(url, status, chunk, received, dest, hashers)
        except TruncatedEncoding as exc:
            raise RetryableFetchError(url, str(exc), status=status) from None
        except CorruptEncoding as exc:
            raise PermanentFetchError(url, f"could not decode the body ({exc})", status=status) from None
        if declared is not None and wire != declared:
            raise RetryableFetchError(
                url, f"body shorter than Content-Length ({wire} of {declared} bytes)", status=status
            )
        digests = {name: hasher.hexdigest() for name, hasher in hashers.items()}
        _check_integrity(source, received, digests, status)
        return _Body(
            received, response.headers.get("ETag"), response.headers.get("Last-Modified"), sha256=digests.get("sha256"),
            content_type=response.headers.get("Content-Type"),
        )

    def _store_chunk(
        self, url: str, status: int, chunk: bytes, received: int, dest: BinaryIO, hashers: dict[str, Any]
    ) -> int:
        """Write one decoded chunk; return the decoded total so far (limit checked on decoded bytes)."""
        limit = self._settings.max_file_bytes
        received += len(chunk)
        if received > limit:  # decoded bytes: a small gzip body can expand without bound
            raise PermanentFetchError(url, f"too large: body exceeds max_file_bytes {limit}", status=status)
        try:
            dest.write(chunk)
        except OSError as exc:
            raise _SinkFailed(exc) from exc
        for hasher in hashers.values():
            hasher.update(chunk)
        return received

    # --- ranged downloads (issue 4 point 3) -----------------------------------------------------

    def _rangeable(self, response: requests.Response) -> bool:
        """Is this 200 worth splitting: ranges advertised, identity body, large but not too large?"""
        settings, headers = self._settings, response.headers
        declared = _content_length(response)
        return (
            response.status_code == 200
            and declared is not None
            and settings.ranged_min_file_bytes <= declared <= settings.max_file_bytes
            and "bytes" in headers.get("Accept-Ranges", "").lower()
            and headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity")
        )

    def _receive_ranged(
        self,
        source: Source,
        probe: requests.Response,
        hop: str,
        dest: BinaryIO,
        end: float,
        extra_requests: list[int],
        digest: bool,
    ) -> _Body:
        """Part 0 from the open probe response, the other parts over ranged requests in parallel,
        hashed (when asked or checked) by a thread following the contiguous prefix as it grows."""
        settings, url = self._settings, source.url
        total = _content_length(probe)
        assert total is not None  # checked by _rangeable
        names = _hash_names(source, digest)
        if source.size is not None and source.size != total:
            raise RetryableFetchError(
                url, f"size mismatch: expected {source.size} bytes, got Content-Length {total}", status=200
            )
        try:
            sink = OffsetSink.open(dest, size=total, need_read=bool(names))
        except OSError as exc:
            raise _SinkFailed(exc) from exc
        if sink is None:  # dest takes no writes at offsets: one stream it is
            return self._receive(source, probe, dest, digest)
        etag, last_modified = probe.headers.get("ETag"), probe.headers.get("Last-Modified")
        connections = settings.connections_per_file
        parts = plan_parts(total, part_bytes=settings.part_bytes, connections=connections)

        def first(part: Part) -> None:
            try:
                self._copy_part(probe, part, sink, url)
            finally:
                # The rest of this body is another part's: drop the connection, free its slot.
                self._local.alarm.watch(None)
                self._dispose(probe, True)

        follower = sink.follow(parts, names, chunk_bytes=settings.chunk_bytes) if names else None
        requests_made = [0]
        try:
            try:
                download_parts(
                    parts,
                    sink=sink,
                    connections=connections,
                    executor=self._part_pool(),
                    first=first,
                    fetch_part=lambda part: self._fetch_part(url, hop, part, sink, end, (etag, last_modified, total)),
                    back_off=lambda error, attempt: self._back_off(error, attempt, end),
                    max_attempts=settings.max_attempts,
                    requests_made=requests_made,
                )
            except RetryableFetchError as exc:
                raise _PartFailed(exc) from None
            finally:
                extra_requests[0] += requests_made[0]
            try:
                digests = follower.result() if follower is not None else {}  # only the tail is left to hash
                sink.finish(total)
            except OSError as exc:
                raise _SinkFailed(exc) from exc
        finally:
            sink.close()  # the hasher thread never outlives this attempt
        _check_integrity(source, total, digests, 206)
        return _Body(total, etag, last_modified, sha256=digests.get("sha256"),
                     content_type=probe.headers.get("Content-Type"))

    def _fetch_part(
        self, url: str, hop: str, part: Part, sink: OffsetSink, end: float, expected: tuple[str | None, str | None, int]
    ) -> None:
        """One ranged request for ``part``, under its own watchdog alarm, written at its offset."""
        alarm = self._watchdog.arm(end - self._clock.monotonic())
        previous, self._local.alarm = getattr(self._local, "alarm", None), alarm
        response: requests.Response | None = None
        try:
            response = self._send(url, hop, end, {"Range": part.header, "Accept-Encoding": "identity"})
            _check_part(url, response, part, expected)
            self._copy_part(response, part, sink, url)
        except (FetchError, HostWaitTooLong, _SinkFailed, _RangeIgnored, _ValidatorChanged, PartsCancelled):
            if alarm.disarm():
                raise _DeadlinePassed() from None
            raise
        except _DeadlinePassed:
            raise
        except Exception as exc:
            if alarm.disarm():
                raise _DeadlinePassed() from None
            raise _translate(exc, url) from exc
        finally:
            self._local.alarm = previous
            cut = alarm.disarm()
            if response is not None:
                self._dispose(response, cut)
        if cut:
            raise _DeadlinePassed()

    def _copy_part(self, response: requests.Response, part: Part, sink: OffsetSink, url: str) -> None:
        """Exactly ``part.length`` bytes of ``response`` into ``sink`` at ``part.start``."""
        raw, chunk_bytes = response.raw, self._settings.chunk_bytes
        offset, remaining = part.start, part.length
        try:
            while remaining:
                chunk = raw.read(min(chunk_bytes, remaining))
                if not chunk:
                    raise RetryableFetchError(
                        url,
                        f"part {part.header} ended after {part.length - remaining} of {part.length} bytes",
                        status=response.status_code,
                    )
                try:
                    sink.write_at(offset, chunk)
                except OSError as exc:
                    raise _SinkFailed(exc) from exc
                offset += len(chunk)
                remaining -= len(chunk)
        except (FetchError, _SinkFailed, PartsCancelled):
            raise
        except Exception as exc:
            if self._local.alarm is not None and self._local.alarm.fired:
                raise _DeadlinePassed() from None
            raise _translate(exc, url) from exc

    def _part_pool(self) -> ThreadPoolExecutor:
        with self._parts_lock:
            if self._parts is None:
                self._parts = ThreadPoolExecutor(
                    max_workers=max(self._settings.pool_size, self._settings.connections_per_file),
                    thread_name_prefix="fanfetch-part",
                )
            return self._parts

    def _watch_connection(self, conn: HTTPConnection) -> None:
        alarm: _Alarm | None = getattr(self._local, "alarm", None)
        if alarm is not None:
            alarm.watch(conn)


def _raw_chunks(response: requests.Response, size: int) -> Iterator[bytes]:
    """The body as sent (transfer coding removed, content coding kept): fanfetch.core.encoding decodes."""
    for chunk in response.raw.stream(size, decode_content=False):
        if chunk:
            yield chunk


def _follow(url: str, hop: str, location: str, status: int) -> str:
    target = urljoin(hop, location.strip())
    if urlsplit(target).scheme not in ("http", "https"):
        raise PermanentFetchError(url, f"redirect to a non-HTTP URL: {target}", status=status)
    return target.split("#", 1)[0]


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _status_error(url: str, response: requests.Response) -> FetchError:
    status = response.status_code
    if is_retryable_status(status):
        return RetryableFetchError(url, f"HTTP {status}", status=status, retry_after_s=_retry_after(response))
    if 300 <= status < 400:
        return PermanentFetchError(url, f"HTTP {status} without a usable Location", status=status)
    if status == 206:
        return PermanentFetchError(url, "HTTP 206 Partial Content to a request without Range", status=status)
    return PermanentFetchError(url, f"HTTP {status}", status=status)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: __cause__, __context__, MaxRetryError.reason, and args."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(e for e in linked if isinstance(e, BaseException))


def _caused_by(exc: BaseException, *types: type[BaseException]) -> bool:
    return any(isinstance(e, types) for e in _causes(exc))


def _translate(exc: BaseException, url: str) -> FetchError:
    """Map a requests/urllib3/socket error to the fanfetch tree, by type (never by message)."""
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if _caused_by(exc, ssl.SSLCertVerificationError, CertificateError):
        return PermanentFetchError(url, f"TLS certificate verification failed ({detail})")
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
            urllib3.exceptions.LocationValueError,
        ),
    ):
        return PermanentFetchError(url, f"invalid URL ({detail})")
    if _caused_by(exc, requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError):
        return PermanentFetchError(url, f"could not decode the body ({detail})")
    if _caused_by(exc, http.client.IncompleteRead):
        return RetryableFetchError(url, f"body shorter than Content-Length ({detail})")
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
        _caused_by(exc, urllib3.exceptions.ConnectTimeoutError)
        and not _caused_by(exc, urllib3.exceptions.NewConnectionError)
    ):
        return RetryableFetchError(url, f"connect timeout ({detail})")
    if _caused_by(exc, requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        return RetryableFetchError(url, f"read timeout ({detail})")
    if _caused_by(exc, ConnectionRefusedError):
        return RetryableFetchError(url, "connection refused")
    if _caused_by(
        exc, ConnectionResetError, urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError
    ):
        return RetryableFetchError(url, f"connection broken ({detail})")
    if isinstance(exc, (requests.RequestException, urllib3.exceptions.HTTPError, OSError)):
        return RetryableFetchError(url, f"connection failed ({detail})")
    raise exc  # a bug of ours, not a network failure: let it surface


def _prepare(url: str, base: dict[str, str], extra: dict[str, str] | None) -> requests.PreparedRequest:
    """A GET for ``url`` built without ``requests.Session``: its cookie, hook, environment and
    redirect plumbing was 28 % of the CPU at 64 small files in flight (docs/performance.md), and
    none of it applies here (no cookies kept, no proxies, redirects followed by the fetcher)."""
    request = requests.PreparedRequest()
    request.prepare_method("GET")
    request.prepare_url(url, None)
    request.prepare_headers(base if extra is None else {**base, **extra})
    request.prepare_body(None, None)
    request.prepare_auth(None, url)  # credentials in the URL (user:pass@host) still become Basic auth
    request.prepare_hooks(None)
    return request


def _conditional_headers(validator: Validator | None) -> dict[str, str] | None:
    """If-None-Match / If-Modified-Since from an earlier run's validators (RFC 9110 section 13.1)."""
    if validator is None:
        return None
    headers = {}
    if validator.etag:
        headers["If-None-Match"] = validator.etag
    if validator.last_modified:
        headers["If-Modified-Since"] = validator.last_modified
    return headers or None


def _host_of(url: str) -> str:
    """The politeness key of a URL: its host and port, as the origin sees them."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def _retry_after(response: requests.Response) -> float | None:
    header = response.headers.get("Retry-After")
    return parse_retry_after(header, now_epoch=time.time()) if header else None


def _hash_names(source: Source, digest: bool) -> tuple[str, ...]:
    """The hashes one pass over the body computes: the manifest's checks, plus sha256 when asked."""
    return tuple(
        name
        for name, wanted in (("sha256", digest or source.sha256 is not None), ("md5", source.md5 is not None))
        if wanted
    )


def _hashers(source: Source, digest: bool) -> dict[str, Any]:
    return {
        name: hashlib.new(name, usedforsecurity=False)  # integrity checks, not security (FIPS hosts)
        for name in _hash_names(source, digest)
    }


def _check_integrity(source: Source, received: int, digests: dict[str, str], status: int) -> None:
    url = source.url
    if source.size is not None and received != source.size:
        raise RetryableFetchError(
            url, f"size mismatch: expected {source.size} bytes, got {received}", status=status
        )
    for name, actual in digests.items():
        expected = getattr(source, name)
        if expected is not None and actual != str(expected).lower():
            raise RetryableFetchError(
                url,
                f"checksum mismatch: {name} expected {expected}, got {actual}",
                status=status,
            )


def _check_part(
    url: str, response: requests.Response, part: Part, expected: tuple[str | None, str | None, int]
) -> None:
    """A part's response must be exactly that part of the very file the probe saw."""
    status, headers = response.status_code, response.headers
    etag, last_modified, total = expected
    if status == 416:  # the range is past the end: the file shrank since the probe
        raise _ValidatorChanged()
    if status != 206:
        if 200 <= status < 400:  # 200: Range ignored; 3xx: the file moved since the probe
            raise _RangeIgnored()
        raise _status_error(url, response)
    span = parse_content_range(headers.get("Content-Range"))
    if span is None or span[:2] != (part.start, part.stop):
        raise _RangeIgnored()
    if span[2] is not None and span[2] != total:
        raise _ValidatorChanged()
    for mine, theirs in ((etag, headers.get("ETag")), (last_modified, headers.get("Last-Modified"))):
        if mine is not None and theirs is not None and mine != theirs:
            raise _ValidatorChanged()
    if headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        raise _RangeIgnored()

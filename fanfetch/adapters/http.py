"""Downloads one URL into a file object: pooled requests session, own retry loop bounded by a
per-file deadline, a watchdog that cuts trickling or stalled bodies, size and checksum checks, and
the SSRF guard on every redirect hop. requests/urllib3 errors become ``fanfetch.errors`` here.
"""

from __future__ import annotations

import hashlib
import heapq
import http.client
import http.cookiejar
import itertools
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
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
from fanfetch.core.models import FileResult, Source
from fanfetch.core.retry import backoff_delay, is_retryable_status, parse_retry_after
from fanfetch.errors import FetchError, PermanentFetchError, RetryableFetchError, RetryAfterTooLong
from fanfetch.ports import Clock

__all__ = ["HttpSettings", "HttpFetcher"]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_COMPACT_AT = 4096  # watchdog heap entries before disarmed alarms are swept out


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

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "read_timeout_s", "file_deadline_s", "backoff_max_s"):
            _require(name, getattr(self, name) > 0, "must be > 0")
        _require("backoff_base_s", self.backoff_base_s >= 0, "must be >= 0")
        for name in ("max_attempts", "max_file_bytes", "pool_size", "chunk_bytes"):
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


class _RejectAllCookies(http.cookiejar.DefaultCookiePolicy):
    """Origins must not leave state in a session shared by every download."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


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
        session = requests.Session()
        session.trust_env = False  # no proxies (they would bypass the guard) and no ~/.netrc credentials
        session.cookies.set_policy(_RejectAllCookies())
        session.headers.update({"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"})
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections and stop the watchdog thread."""
        self._session.close()
        self._watchdog.close()

    def fetch(self, source: Source, dest: BinaryIO, *, deadline: float | None = None) -> FileResult:
        """Download ``source`` into ``dest`` (rewound and truncated before every attempt).

        ``deadline`` is an absolute ``clock.monotonic()`` value; the file's own budget
        (``file_deadline_s`` from now) applies too, whichever ends first. Raises FetchError
        subclasses only, each carrying the source URL, the last HTTP status and the attempts made;
        an ``OSError`` from writing ``dest`` (a full disk) is not the network's and propagates as is.
        """
        settings, clock, url = self._settings, self._clock, source.url
        end = clock.monotonic() + settings.file_deadline_s
        if deadline is not None:
            end = min(end, deadline)
        attempts = 0
        while True:
            if clock.monotonic() >= end:
                raise RetryableFetchError(
                    url, "deadline passed before the download could start", attempts=attempts
                )
            attempts += 1
            dest.seek(0)
            dest.truncate()
            try:
                result = self._attempt(source, dest, end)
            except _DeadlinePassed:
                raise RetryableFetchError(url, "deadline exceeded", attempts=attempts) from None
            except PermanentFetchError as exc:
                raise exc.with_attempts(attempts) from None
            except RetryableFetchError as exc:
                if attempts >= settings.max_attempts:
                    raise exc.with_attempts(attempts) from None
                self._back_off(exc, attempts, end)
                continue
            return FileResult(url, result[0], attempts, etag=result[1], last_modified=result[2])

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

    def _attempt(self, source: Source, dest: BinaryIO, end: float) -> tuple[int, str | None, str | None]:
        """One attempt under a watchdog alarm: follow redirects, then stream the body into ``dest``."""
        alarm = self._watchdog.arm(end - self._clock.monotonic())
        self._local.alarm = alarm
        opened: list[requests.Response] = []
        try:
            result = self._follow_redirects(source, dest, end, opened)
        except _SinkFailed as exc:
            alarm.disarm()
            raise exc.error from None
        except FetchError:
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
                if cut:
                    response.raw.close()  # its socket is shut down: never hand it back to the pool
                response.close()
        if cut:  # a close-delimited body cut by the watchdog can look complete: it is not
            raise _DeadlinePassed()
        return result

    def _follow_redirects(
        self, source: Source, dest: BinaryIO, end: float, opened: list[requests.Response]
    ) -> tuple[int, str | None, str | None]:
        hop = source.url
        seen = {hop}
        for _ in range(self._settings.max_redirects + 1):
            response = self._send(source.url, hop, end)
            opened.append(response)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECT_STATUSES or not location:
                return self._receive(source, response, dest)
            hop = _follow(source.url, hop, location, response.status_code)
            if hop in seen:
                raise PermanentFetchError(source.url, f"redirect loop at {hop}", status=response.status_code)
            seen.add(hop)
            # Give the connection back now: holding it while the next hop waits on a blocking
            # pool of the same origin could deadlock a full thread pool.
            self._local.alarm.watch(None)
            opened.remove(response)
            response.close()
        raise PermanentFetchError(source.url, f"more than {self._settings.max_redirects} redirects")

    def _send(self, url: str, hop: str, end: float) -> requests.Response:
        remaining = end - self._clock.monotonic()
        if remaining <= 0:
            raise _DeadlinePassed()
        timeout = (
            min(self._settings.connect_timeout_s, remaining),
            min(self._settings.read_timeout_s, remaining),
        )
        try:
            return self._session.get(
                hop, stream=True, allow_redirects=False, timeout=timeout, verify=self._verify
            )
        except FetchError as exc:  # raised by the guard inside the adapter, naming the hop
            reason = exc.reason if hop == url else f"redirected to {hop}: {exc.reason}"
            raise type(exc)(url, reason, status=exc.status) from None

    def _receive(
        self, source: Source, response: requests.Response, dest: BinaryIO
    ) -> tuple[int, str | None, str | None]:
        url, status, limit = source.url, response.status_code, self._settings.max_file_bytes
        if status == 206 or not 200 <= status < 300:
            raise _status_error(url, response)
        declared = _content_length(response)
        if declared is not None and declared > limit:
            raise PermanentFetchError(
                url, f"too large: Content-Length {declared} > max_file_bytes {limit}", status=status
            )
        hashers = {
            name: hashlib.new(name, usedforsecurity=False)  # integrity checks, not security (FIPS hosts)
            for name, expected in (("sha256", source.sha256), ("md5", source.md5))
            if expected is not None
        }
        received = 0
        for chunk in _chunks(response, self._settings.chunk_bytes):
            received += len(chunk)
            if received > limit:  # decoded bytes: a small gzip body can expand without bound
                raise PermanentFetchError(
                    url, f"too large: body exceeds max_file_bytes {limit}", status=status
                )
            try:
                dest.write(chunk)
            except OSError as exc:
                raise _SinkFailed(exc) from exc
            for hasher in hashers.values():
                hasher.update(chunk)
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        if declared is not None and not encoded and received != declared:
            raise RetryableFetchError(
                url, f"body shorter than Content-Length ({received} of {declared} bytes)", status=status
            )
        if source.size is not None and received != source.size:
            raise RetryableFetchError(
                url, f"size mismatch: expected {source.size} bytes, got {received}", status=status
            )
        for name, hasher in hashers.items():
            expected = getattr(source, name)
            if hasher.hexdigest() != str(expected).lower():
                raise RetryableFetchError(
                    url,
                    f"checksum mismatch: {name} expected {expected}, got {hasher.hexdigest()}",
                    status=status,
                )
        return received, response.headers.get("ETag"), response.headers.get("Last-Modified")

    def _watch_connection(self, conn: HTTPConnection) -> None:
        alarm: _Alarm | None = getattr(self._local, "alarm", None)
        if alarm is not None:
            alarm.watch(conn)


def _chunks(response: requests.Response, size: int) -> Iterator[bytes]:
    for chunk in response.iter_content(chunk_size=size):
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
        header = response.headers.get("Retry-After")
        wait_s = parse_retry_after(header, now_epoch=time.time()) if header else None
        return RetryableFetchError(url, f"HTTP {status}", status=status, retry_after_s=wait_s)
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

"""One HTTP request as a libcurl transfer: its options, its header and body callbacks on the engine's I/O
thread (decoded, size-limited, hashed, written into ``dest``), and its end as a body, a redirect or an error
(libcurl's result codes become ``fanfetch.errors`` by code, never by message text)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urljoin

import pycurl

from fanfetch.adapters.curl_engine import CANCELLED, SILENCE, Done, socket_opener
from fanfetch.adapters.curl_outcome import (
    AttemptCancelled,
    Body,
    DeadlinePassed,
    Redirect,
    SinkFailed,
    check_integrity,
    content_length,
    hashers,
    status_error,
)
from fanfetch.adapters.guard import normalise_ip
from fanfetch.adapters.offset_sink import OffsetSink, PartsCancelled
from fanfetch.core.encoding import CorruptEncoding, StreamDecoder, TruncatedEncoding, UnsupportedEncoding, plan_body
from fanfetch.core.models import Source
from fanfetch.core.ranges import Part
from fanfetch.errors import BlockedAddressError, PermanentFetchError, RetryableFetchError

if TYPE_CHECKING:
    from fanfetch.adapters.curl_fetcher import CurlFetcher

_MAX_ERROR_BODY = 1 << 20  # an error response's body is read (keeping the connection) up to this, then cut
_DEADLINE_SLACK = 0.9  # a timeout (28) after this share of the total budget is the deadline, not a stall
# libcurl results that will be the same on every attempt: the origin speaks broken HTTP.
# libcurl result codes (CURLE_*), by number: pycurl does not name every one.
_UNSUPPORTED_PROTOCOL, _URL_MALFORMAT, _COULDNT_CONNECT, _WEIRD_SERVER_REPLY = 1, 3, 7, 8
_PARTIAL_FILE, _OPERATION_TIMEDOUT, _RECV_ERROR, _FILESIZE_EXCEEDED = 18, 28, 56, 63
# 1 comes back for a reply that is no HTTP/1.x (our URLs are http/https before they reach libcurl).
_PROTOCOL_VIOLATIONS = frozenset({_UNSUPPORTED_PROTOCOL, _WEIRD_SERVER_REPLY, 16, 61, 92})
_TLS_VERIFY = frozenset({60, 51, 58, 77, 83, 90, 91})  # peer verification, certs, CA file, pinned key, OCSP


class Request:
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
        # the response's header lines as libcurl hands them over: list.append is the callback (no Python frame
        # per line); read once, at the first body byte or at the end (``_head_accepted``)
        self.head: list[bytes] = []
        self.head_state = 0  # 0: not decided yet, 1: accepted by ``_headers_done``, 2: refused
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
        easy.setopt(pycurl.HEADERFUNCTION, self.head.append)
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

    def read_head(self) -> bool:
        """Set ``status`` and ``headers`` from the header lines received so far; True once the final answer's
        block has ended. An interim answer (100 Continue, 103 Early Hints) is skipped: the final one follows;
        lines after the final block (trailers of a chunked body) are not headers."""
        status, headers, complete = 0, {}, False
        for line in self.head:
            if line.startswith(b"HTTP/"):
                parts = line.split(None, 2)
                status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                headers = {}
            elif line in (b"\r\n", b"\n"):
                if not 100 <= status < 200:
                    complete = True
                    break
            else:
                name, sep, value = line.decode("latin-1").partition(":")
                if sep:
                    key = name.strip().lower()
                    text = value.strip()
                    headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.status, self.headers = status, headers
        return complete

    def _head_accepted(self) -> bool:
        """Read the final answer's headers once (at the first body byte, or at the end when there is none) and
        let ``_headers_done`` judge them; False when it refused them (the transfer stops there)."""
        if self.head_state == 0:
            self.head_state = 1 if not self.read_head() or self._headers_done() else 2
        return self.head_state == 1

    def _settle(self, done: Done) -> None:
        """At the end: headers judged (a body-less answer had no write to judge them at), or at least read."""
        if self.head_state == 0:
            if done.code == 0:
                self._head_accepted()
            else:
                self.read_head()

    def _headers_done(self) -> bool:
        return True

    def _write(self, data: bytes) -> int | None:
        self.last_activity = time.monotonic()
        return None if self.head_state == 1 or self._head_accepted() else 0

    def _fail(self, error: BaseException) -> int:
        if self.error is None:
            self.error = error
        return 0

    # --- the end (caller's thread) -----------------------------------------------------------------------------

    def raise_transport(self, done: Done) -> None:
        """Raise the error for a transfer that did not complete (``done.code`` != 0)."""
        url, code, status = self.url, done.code, done.status or None
        if self.head_state == 0:
            self.read_head()
        if self.error is not None:
            raise self.error
        if self.blocked is not None:
            raise BlockedAddressError(url, self.blocked)
        if code == CANCELLED:
            raise AttemptCancelled()
        if code == SILENCE:
            raise RetryableFetchError(url, f"read timeout ({done.message})", status=status)
        detail = f"curl {code}: {done.message}"[:300]
        if code == _OPERATION_TIMEDOUT:
            elapsed = time.monotonic() - self.started
            if elapsed >= self.timeout_s * _DEADLINE_SLACK:
                raise DeadlinePassed()
            if not self.head and self.last_activity == 0.0:
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


class Stream(Request):
    """A whole-body GET: decoded (content coding), size-limited, hashed and written into ``dest``."""

    def __init__(self, fetcher: CurlFetcher, source: Source, hop: str, pins: tuple[str, int, tuple[str, ...]] | None,
                 timeout_s: float, extra: list[str], dest: BinaryIO, digest: bool, conditional: bool,
                 rangeable: Callable[[Stream], bool] | None):
        super().__init__(fetcher, source.url, hop, pins, timeout_s, extra)
        self.source = source
        self.dest = dest
        self.digest = digest
        self.conditional = conditional
        self.rangeable = rangeable
        self.mode = "discard"  # discard (error, redirect, 304) / store / probe (a ranged download's first part)
        self.decoder: StreamDecoder | None = None
        self.plain = False  # the body is stored as received (no content coding to undo): no decoder per write
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
        declared = content_length(self.headers)
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
            self._fail(SinkFailed(exc))
            return False
        self.hashers = hashers(self.source, self.digest)
        self.decoder = StreamDecoder(plan, max_out=settings.chunk_bytes)
        self.plain = not plan.decode
        self.mode = "store"  # the caller waits for the end (``decided`` is set then): one wake-up per file
        return True

    def _write(self, data: bytes) -> int | None:
        self.last_activity = time.monotonic()
        if self.head_state != 1 and not self._head_accepted():
            return 0
        if self.mode == "store":
            if self.plain:
                return None if self._store(data) else 0
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
            self._fail(SinkFailed(exc))
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
            return self._fail(SinkFailed(exc))
        except PartsCancelled:
            return 0
        self.offset += len(take)
        return None if self.offset < part.stop else 0

    def outcome(self, done: Done) -> Body | Redirect:
        self._settle(done)
        if self.head_state == 2 and self.error is not None:
            raise self.error  # what ``_headers_done`` refused (a body-less answer, judged at the end)
        url, status = self.url, self.status
        if self.mode == "probe" and self.first is not None and self.offset >= self.first.stop:
            return Body(self.first.length, None, None)  # part 0 complete; the transfer was stopped on purpose
        if done.code != 0:
            self.raise_transport(done)
        if status == 304 and self.conditional:
            return Body(0, self.headers.get("etag"), self.headers.get("last-modified"), not_modified=True)
        if 300 <= status < 400 and status != 304:
            location = self.headers.get("location")
            if location:
                return Redirect(done.redirect_url or urljoin(self.hop, location.strip()))
        if status == 206 or not 200 <= status < 300:
            raise status_error(url, status, done.retry_after_s)
        if self.mode == "probe":  # stopped before part 0 was whole: the body ended early
            raise RetryableFetchError(url, f"body ended after {self.offset} bytes of the first part", status=status)
        try:
            for chunk in () if self.plain else self.decoder.finish():  # type: ignore[union-attr]
                if not self._store(chunk):
                    raise self.error  # type: ignore[misc]
        except TruncatedEncoding as exc:
            raise RetryableFetchError(url, str(exc), status=status) from None
        except CorruptEncoding as exc:
            raise PermanentFetchError(url, f"could not decode the body ({exc})", status=status) from None
        digests = {name: hasher.hexdigest() for name, hasher in self.hashers.items()}
        check_integrity(self.source, self.received, digests, status)
        return Body(self.received, self.headers.get("etag"), self.headers.get("last-modified"),
                     sha256=digests.get("sha256"), content_type=self.headers.get("content-type"))


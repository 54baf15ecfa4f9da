"""``fanfetch.ports.Fetcher`` on libcurl (curl_engine.py): the caller's thread plans attempts, redirect
hops and backoff; libcurl, on the engine's one I/O thread, runs each request under a total timeout,
a connect timeout and a low-speed guard, with the SSRF guard checking every address it dials.
"""

from __future__ import annotations

import os
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pycurl

from fanfetch.adapters.clock import SystemClock
from fanfetch.adapters.curl_async import LITERAL_PINS, AsyncFetches, AsyncFile
from fanfetch.adapters.curl_engine import CurlEngine
from fanfetch.adapters.curl_outcome import (
    AttemptCancelled,
    Body,
    DeadlinePassed,
    PartFailed,
    RangeIgnored,
    SinkFailed,
    ValidatorChanged,
    conditional_headers,
)
from fanfetch.adapters.curl_ranged import RangedDownloads
from fanfetch.adapters.curl_request import Request, Stream
from fanfetch.adapters.guard import AddressGuard, normalise_ip
from fanfetch.adapters.http_settings import HttpSettings
from fanfetch.adapters.politeness import HostGate, HostWaitTooLong
from fanfetch.core.encoding import ACCEPT_ENCODING
from fanfetch.core.ledger import Validator
from fanfetch.core.models import FileResult, Source
from fanfetch.core.retry import backoff_delay
from fanfetch.errors import FetchError, PermanentFetchError, RetryableFetchError, RetryAfterTooLong
from fanfetch.ports import Clock

__all__ = ["CurlFetcher", "HttpSettings"]

_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS
_MAX_BUFFER = 512 * 1024  # libcurl's receive buffer per transfer (one write callback per buffer at most)


def _ca_bundle(settings: HttpSettings) -> str | None:
    configured = settings.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if configured:
        return configured
    try:
        import certifi
    except ImportError:  # libcurl's built-in default then
        return None
    return certifi.where()


class CurlFetcher(AsyncFetches, RangedDownloads):
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
        # host names resolved and approved by the guard, each until (clock) now + settings.dns_cache_s
        self._name_pins: dict[tuple[str, int], tuple[tuple[str, int, tuple[str, ...]], float]] = {}
        self._slots_lock = threading.Lock()
        self._in_flight = 0  # fetch_async files running (each holds a slot until its future is done)
        self._waiting: deque[AsyncFile] = deque()
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
            if len(self._resolve_lists) < LITERAL_PINS:
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
               first: list[tuple[Stream, Callable[[], Any]]]) -> FileResult:
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
            except DeadlinePassed:
                raise RetryableFetchError(url, "deadline exceeded", attempts=attempts) from None
            except AttemptCancelled:
                raise RetryableFetchError(url, "download cancelled: the run is aborting",
                                          attempts=attempts + extra_requests[0]) from None
            except SinkFailed as exc:
                raise exc.error from None
            except HostWaitTooLong as exc:
                raise exc.error.with_attempts(attempts + extra_requests[0]) from None
            except PartFailed as exc:
                raise exc.error.with_attempts(attempts + extra_requests[0]) from None
            except RangeIgnored:
                ranged = False
                continue
            except ValidatorChanged:
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
                ranged: bool) -> Stream:
        return Stream(self, source, hop, None, 0.0, conditional, dest, digest, bool(conditional),
                       self._rangeable if ranged else None)

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
                 first: list[tuple[Stream, Callable[[], Any]]] | None = None) -> Body:
        """One attempt: follow redirect hops (each guarded, pinned, counted), then the body."""
        url, hop = source.url, source.url
        seen = {hop}
        conditional = conditional_headers(validator)
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
            if isinstance(result, Body):
                if result.not_modified and validator is not None:
                    return Body(0, result.etag or validator.etag, result.last_modified or validator.last_modified,
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

    def _remembered_pins(self, key: tuple[str, int]) -> tuple[str, int, tuple[str, ...]] | None:
        """The guard's verdict kept for (host, port): an IP literal's for good, a host name's for dns_cache_s."""
        literal = self._literal_pins.get(key)
        if literal is not None:
            return literal
        named = self._name_pins.get(key)
        return named[0] if named is not None and named[1] > self._clock.monotonic() else None

    def _pins(self, url: str, hop: str) -> tuple[str, int, tuple[str, ...]]:
        parts = urlsplit(hop)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise PermanentFetchError(url, f"invalid URL (bad port in {hop})") from None
        host = parts.hostname or ""
        if not host:
            raise PermanentFetchError(url, "URL has no host")
        remembered = self._remembered_pins((host, port))
        if remembered is not None:
            return remembered
        try:
            addresses = self._guard.resolve(host, port)
        except FetchError as exc:
            reason = exc.reason if hop == url else f"redirected to {hop}: {exc.reason}"
            raise type(exc)(url, reason, status=exc.status) from None
        pins = host, port, tuple(normalise_ip(a) for a in addresses)
        if normalise_ip(host) == pins[2][0]:
            if len(self._literal_pins) < LITERAL_PINS:
                self._literal_pins[(host, port)] = pins  # an IP literal: no DNS, the guard's verdict cannot change
        elif self.settings.dns_cache_s and (len(self._name_pins) < LITERAL_PINS or (host, port) in self._name_pins):
            # a host name: its approved addresses for dns_cache_s; every request stays pinned to them
            # (CURLOPT_RESOLVE) and the open-socket callback still checks the address dialled
            self._name_pins[(host, port)] = pins, self._clock.monotonic() + self.settings.dns_cache_s
        return pins

    def _run(self, request: Request, end: float) -> Any:
        """Admit, pin, submit and wait for one request; return its outcome."""
        return self._submit(request, end)()

    def _submit(self, request: Request, end: float) -> Callable[[], Any]:
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
                raise DeadlinePassed()
            request.timeout_s = remaining
            read_timeout = self.settings.read_timeout_s
            request.silence_s = read_timeout if read_timeout < remaining else None
            if isinstance(request, Stream):
                request.decided = threading.Event()
            future = self._engine.submit(request)
        except BaseException:
            if release is not None:
                release()
            raise
        if isinstance(request, Stream):
            decided = request.decided
            future.add_done_callback(lambda _: decided.set())  # type: ignore[union-attr]

        def wait() -> Any:
            try:
                done = future.result()
                if gate is not None:
                    if request.head_state == 0:
                        request.read_head()
                    if request.status:
                        gate.record(host, request.status, retry_after_s=done.retry_after_s)
                return request.outcome(done)  # type: ignore[attr-defined]
            finally:
                if release is not None:
                    release()

        return wait


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


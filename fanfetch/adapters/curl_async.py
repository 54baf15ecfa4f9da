"""``CurlFetcher.fetch_async``: files without a waiting thread each. At most ``pool_size`` run at once; a plain
first attempt completes on the engine's I/O thread, anything else goes on as ``fetch`` on a thread.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from fanfetch.adapters.curl_engine import Done
from fanfetch.adapters.curl_outcome import Body, conditional_headers
from fanfetch.adapters.curl_request import Stream
from fanfetch.core.ledger import Validator
from fanfetch.core.models import FileResult, Source
from fanfetch.errors import FetchError, RetryableFetchError

LITERAL_PINS = 1024  # hosts whose guard verdict is remembered (IP literals for good, names for dns_cache_s)

_DECIDED = threading.Event()  # an injected first request (fetch_async) is decided already
_DECIDED.set()


class AsyncFile:
    """One fetch_async file: its arguments and its future (``end``/``validator`` set once it starts)."""

    __slots__ = ("future", "source", "dest", "deadline", "validator", "digest", "before", "end")

    def __init__(self, future: Future[FileResult], source: Source, dest: BinaryIO, deadline: float | None,
                 validator: Validator | None, digest: bool, before: Callable[[], None] | None):
        self.future, self.source, self.dest, self.deadline = future, source, dest, deadline
        self.validator, self.digest, self.before, self.end = validator, digest, before, 0.0


class AsyncFetches:
    """CurlFetcher's fetch_async (a mixin: uses its engine, settings, ``_prepare``, ``_fetch`` and ``_pins``)."""

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
        item = AsyncFile(future, source, dest, deadline, validator, digest, before)
        with self._slots_lock:
            if self._in_flight >= self.settings.pool_size:
                self._waiting.append(item)
                return future
            self._in_flight += 1
        self._run_started(item)
        return future

    def _run_started(self, item: AsyncFile | None) -> None:
        """Begin ``item`` (it holds a slot); when it ends at once, hand its slot on to the next in line."""
        while item is not None:
            if self._begin(item):
                return
            item = self._next_in_line()

    def _next_in_line(self) -> AsyncFile | None:
        with self._slots_lock:
            if self._waiting:
                return self._waiting.popleft()  # the slot passes on
            self._in_flight -= 1
            return None

    def _end_async(self, item: AsyncFile, result: FileResult | None, error: BaseException | None) -> None:
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)  # type: ignore[arg-type]
        self._run_started(self._next_in_line())

    def _begin(self, item: AsyncFile) -> bool:
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
            request = self._stream(source, source.url, conditional_headers(validator), item.dest, item.digest,
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

    def _probe_goes_on(self, item: AsyncFile, request: Stream) -> None:
        """A ranged download's probe decided (I/O thread, at its headers): the parts go on on a thread now."""
        ended = request.ended = threading.Event()

        def resume() -> Any:
            ended.wait()
            return request.outcome(request.done)  # type: ignore[arg-type]

        self._continue(item, [(request, resume)])

    def _literal_pin(self, url: str) -> tuple[str, int, tuple[str, ...]] | None:
        """The guard's remembered verdict for the URL's host: an IP literal (checked now if new) or a host name
        resolved within ``settings.dns_cache_s``; None for a name not resolved lately (DNS may block: a thread resolves
        it and remembers the verdict) or a refused address (``fetch`` reports it as ever)."""
        slash = url.find("/", url.find("//") + 2)
        origin = url[:slash] if slash > 0 else url
        key = self._pin_keys.get(origin)
        if key is None:
            key = _pin_key(origin)
            if key is None:
                return None
            if len(self._pin_keys) < LITERAL_PINS and "?" not in origin and "#" not in origin:
                self._pin_keys[origin] = key
        pins = self._remembered_pins(key)
        if pins is not None:
            return pins
        try:
            ipaddress.ip_address(key[0])
            return self._pins(url, url)
        except (ValueError, FetchError):
            return None

    def _first_done(self, item: AsyncFile, request: Stream, done: Done) -> None:
        """The first request ended (I/O thread): a plain body completes the file here; anything else goes on."""
        try:
            self._judge_first(item, request, done)
        except BaseException as exc:  # noqa: BLE001 - a bug here must not leave the file's future waiting
            if not item.future.done():
                self._end_async(item, None, exc)

    def _judge_first(self, item: AsyncFile, request: Stream, done: Done) -> None:
        request.done, request.on_probe = done, None
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
        if not isinstance(outcome, Body) or (outcome.not_modified and item.validator is not None):
            self._continue(item, [(request, lambda: outcome)])
            return
        self._end_async(item, FileResult(
            item.source.url, outcome.size, 1, etag=outcome.etag, last_modified=outcome.last_modified,
            not_modified=outcome.not_modified, sha256=outcome.sha256 if item.digest else None,
            content_type=outcome.content_type,
        ), None)

    def _continue(self, item: AsyncFile, first: list[tuple[Stream, Callable[[], Any]]]) -> None:
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


def _pin_key(url: str) -> tuple[str, int] | None:
    """(host, port) as ``CurlFetcher._pins`` keys its remembered verdicts; None for a URL it would refuse."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname or "", port)


"""A large file as ranged parts on libcurl: the probe decides at its headers whether to split, each other
part is a ranged transfer written at its offset and checked to be that part of the very same file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fanfetch.adapters.curl_engine import Done
from fanfetch.adapters.curl_outcome import (
    Body,
    PartFailed,
    RangeIgnored,
    SinkFailed,
    ValidatorChanged,
    check_integrity,
    content_length,
    hash_names,
    status_error,
)
from fanfetch.adapters.curl_request import Request, Stream
from fanfetch.adapters.offset_sink import OffsetSink, PartsCancelled
from fanfetch.adapters.ranged import download_parts
from fanfetch.core.models import Source
from fanfetch.core.ranges import Part, parse_content_range, plan_parts
from fanfetch.errors import FetchError, RetryableFetchError

if TYPE_CHECKING:
    from fanfetch.adapters.curl_fetcher import CurlFetcher

_HASHED_ROUNDS = 2  # parts in >= 2 rounds: the first is hashed while the second lands (ranges.plan_parts)


class PartRequest(Request):
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
        except (RangeIgnored, ValidatorChanged, FetchError) as exc:
            self.verdict = exc
            return False
        self.writing = True
        return True

    def _write(self, data: bytes) -> int | None:
        self.last_activity = time.monotonic()
        if self.head_state == 0:
            self._head_accepted()
        if not self.writing:
            return 0
        take = data[: self.part.stop - self.offset]
        try:
            self.sink.write_at(self.offset, take)
        except OSError as exc:
            return self._fail(SinkFailed(exc))
        except PartsCancelled as exc:
            return self._fail(exc)
        self.offset += len(take)
        return None if len(take) == len(data) else 0

    def outcome(self, done: Done) -> None:
        self._settle(done)
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


class RangedDownloads:
    """CurlFetcher's ranged downloads (a mixin: uses its settings, ``_run`` and ``_back_off``)."""

    def _rangeable(self, request: Stream) -> bool:
        """Called at the probe's headers (I/O thread): worth splitting? Then open the sink for part 0."""
        settings, headers = self.settings, request.headers
        declared = content_length(headers)
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
            sink = OffsetSink.open(request.dest, size=declared, need_read=bool(hash_names(source, request.digest)),
                                   write_behind=request.digest)
        except OSError as exc:
            request._fail(SinkFailed(exc))
            return False
        if sink is None:
            return False
        parts = plan_parts(declared, part_bytes=settings.part_bytes, connections=settings.connections_per_file,
                           min_rounds=_HASHED_ROUNDS)
        names = hash_names(source, request.digest)
        request.follower = sink.follow(parts, names, chunk_bytes=settings.chunk_bytes) if names else None
        request.sink, request.first = sink, parts[0]
        return True

    def _receive_ranged(self, source: Source, probe: Stream, waiting: Callable[[], Any], hop: str, end: float,
                        extra_requests: list[int], digest: bool) -> Body:
        """Part 0 arrives on the probe (still running); the other parts as ranged transfers written at
        their offsets, in parallel; hashed (when asked or checked) by a thread following the prefix."""
        settings, url, sink = self.settings, source.url, probe.sink
        assert sink is not None
        total = content_length(probe.headers)
        assert total is not None
        etag, last_modified = probe.headers.get("etag"), probe.headers.get("last-modified")
        connections = settings.connections_per_file
        parts = plan_parts(total, part_bytes=settings.part_bytes, connections=connections, min_rounds=_HASHED_ROUNDS)
        follower = probe.follower
        requests_made = [0]

        def first(part: Part) -> None:
            waiting()  # raises when the probe ended before part 0 was whole

        def fetch_part(part: Part) -> None:
            self._run(PartRequest(self, url, hop, None, 0.0, part, sink, (etag, last_modified, total)), end)

        try:
            try:
                download_parts(
                    parts, sink=sink, connections=connections, executor=self._part_pool(),
                    first=first, fetch_part=fetch_part,
                    back_off=lambda error, attempt: self._back_off(error, attempt, end),
                    max_attempts=settings.max_attempts, requests_made=requests_made,
                )
            except RetryableFetchError as exc:
                raise PartFailed(exc) from None
            finally:
                extra_requests[0] += requests_made[0]
            try:
                digests = follower.result() if follower is not None else {}
                sink.finish(total)
            except OSError as exc:
                raise SinkFailed(exc) from exc
        finally:
            sink.cancelled.set()  # a probe still writing stops at its next write
            sink.close()
        check_integrity(source, total, digests, 206)
        return Body(total, etag, last_modified, sha256=digests.get("sha256"),
                     content_type=probe.headers.get("content-type"))

    def _part_pool(self) -> Any:
        if self._parts is None:
            from concurrent.futures import ThreadPoolExecutor

            self._parts = ThreadPoolExecutor(
                max_workers=max(self.settings.pool_size, self.settings.connections_per_file),
                thread_name_prefix="fanfetch-part",
            )
        return self._parts



def _check_part(url: str, status: int, headers: dict[str, str], part: Part,
                expected: tuple[str | None, str | None, int]) -> None:
    """A part's response must be exactly that part of the very file the probe saw."""
    etag, last_modified, total = expected
    if status == 416:
        raise ValidatorChanged()
    if status != 206:
        if 200 <= status < 400:
            raise RangeIgnored()
        raise status_error(url, status, None)
    span = parse_content_range(headers.get("content-range"))
    if span is None or span[:2] != (part.start, part.stop):
        raise RangeIgnored()
    if span[2] is not None and span[2] != total:
        raise ValidatorChanged()
    for mine, theirs in ((etag, headers.get("etag")), (last_modified, headers.get("last-modified"))):
        if mine is not None and theirs is not None and mine != theirs:
            raise ValidatorChanged()
    if headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        raise RangeIgnored()

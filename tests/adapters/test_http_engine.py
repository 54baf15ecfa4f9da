"""The libcurl engine's own promises: one I/O thread per engine that ``close`` stops, and ``cancel``
(a second Ctrl-C) ending transfers in flight at once. Each test checks only the engine it built.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from fanfetch.adapters.curl_engine import CurlEngine, EngineClosed
from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.models import Source
from fanfetch.errors import RetryableFetchError
from tests.fakes import FakeClock
from tests.origin_faults import ok


@dataclass
class _Hold:
    """Sends headers, signals ``reached``, then holds the body until the origin closes."""

    reached: threading.Event = field(default_factory=threading.Event)

    def serve(self, ex) -> None:
        if ex.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nx"):
            self.reached.set()
            ex.hold(30)


def _fetcher(origin) -> CurlFetcher:
    return CurlFetcher(HttpSettings(max_attempts=3), clock=FakeClock(),
                       guard=AddressGuard(allow_hosts=[f"127.0.0.1:{origin.port}"]), rand=lambda: 0.0)


def test_one_io_thread_serves_every_caller_and_close_stops_it(fault_origin):
    # GIVEN 24 files fetched by 8 caller threads through one fetcher
    urls = [fault_origin.add(f"/f{i}", ok(b"%d" % i)) for i in range(24)]
    fetcher = _fetcher(fault_origin)

    def get(url: str) -> bytes:
        dest = io.BytesIO()
        fetcher.fetch(Source(url), dest)
        return dest.getvalue()

    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(get, urls))
    # THEN every body arrived, all through the engine's one thread
    assert bodies == [b"%d" % i for i in range(24)]
    thread = fetcher.engine.thread
    assert thread is not None and thread.is_alive()
    # WHEN closed / THEN that thread ends, and the engine takes no more work
    fetcher.close()
    assert not thread.is_alive()
    with pytest.raises(EngineClosed):
        fetcher.engine.submit(object())  # type: ignore[arg-type]


def test_cancel_ends_a_transfer_in_flight_at_once_without_retrying(fault_origin):
    # GIVEN a fetch stuck in the middle of a body (the origin holds it for 30 s)
    behaviour = _Hold()
    url = fault_origin.add("/held", behaviour)
    fetcher = _fetcher(fault_origin)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            fetcher.fetch(Source(url), io.BytesIO())
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    caller = threading.Thread(target=run)
    caller.start()
    assert behaviour.reached.wait(10)
    # WHEN the run aborts (a second Ctrl-C)
    fetcher.cancel()
    caller.join(10)
    fetcher.close()
    # THEN the caller got a retryable "cancelled" error after that one request, and no retry was made
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], RetryableFetchError)
    assert "cancelled" in outcome[0].reason and fault_origin.requests("/held") == 1


def test_an_engine_that_never_ran_closes_cleanly():
    # GIVEN an engine that was never given work / WHEN closed twice / THEN no thread, no error
    engine = CurlEngine(max_connections=4)
    engine.close()
    engine.close()
    assert engine.thread is None

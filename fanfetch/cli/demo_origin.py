"""A built-in sample origin on 127.0.0.1: synthetic station-year climate CSVs, like the motivating job.

``GET /climate/bulk?format=csv&stationID=<id>&Year=<year>`` returns one station-year (a header and
12 monthly rows), after an optional per-request latency; a deterministic few answer 503 once, so
the demo shows retries. Responses carry an ETag and ``If-None-Match`` gets a 304, like a well-kept
origin. The server counts requests, which tests use to prove resume fetches nothing.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["Station", "demo_stations", "station_year_csv", "DemoOrigin", "CSV_HEADER"]

CSV_HEADER = "Date/Time,Year,Month,Station ID,Mean Temp (C),Total Precip (mm)\r\n"


@dataclass(frozen=True)
class Station:
    station_id: int
    first_year: int
    last_year: int


def demo_stations(count: int = 200, *, seed: int = 8324) -> list[Station]:
    """``count`` stations with 1 to 30 years of data each, the same for the same seed."""
    rng = random.Random(seed)
    stations = []
    for i in range(count):
        span = rng.randint(1, 30)
        first = rng.randint(1960, 2024 - span)
        stations.append(Station(station_id=1000 + 7 * i, first_year=first, last_year=first + span - 1))
    return stations


def station_year_csv(station_id: int, year: int, version: int = 0) -> bytes:
    """The deterministic body served for one station-year (CRLF, like the government server).

    ``version`` > 0 stands for a revised file (the origin corrected its data): other numbers.
    """
    rng = random.Random(f"{station_id}-{year}" + (f"-v{version}" if version else ""))
    rows = [CSV_HEADER]
    for month in range(1, 13):
        temp = rng.uniform(-25, 25) + 10 * (1 - abs(month - 7) / 6)
        rows.append(f"{year}-{month:02d},{year},{month},{station_id},{temp:.1f},{rng.uniform(0, 140):.1f}\r\n")
    return "".join(rows).encode("utf-8")


def _fails_once(path: str, flaky_one_in: int) -> bool:
    if flaky_one_in <= 0:
        return False
    return int.from_bytes(hashlib.sha256(path.encode()).digest()[:4], "big") % flaky_one_in == 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed ACK
    # (40 ms on Linux) on every reused keep-alive connection, which is what libcurl keeps.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # keep the demo's terminal clean
        return

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        origin = self.server.origin
        with origin.lock:
            origin.requests[self.path] += 1
            seen = origin.requests[self.path]
            origin.lock.notify_all()
        if origin.latency_s:
            time.sleep(origin.latency_s)
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        try:
            station_id = int(query["stationID"][0])
            year = int(query["Year"][0])
        except (KeyError, ValueError):
            self._reply(404, b"no such station-year\n")
            return
        if parts.path != "/climate/bulk" or not origin.serves(station_id, year):
            self._reply(404, b"no such station-year\n")
            return
        if seen == 1 and _fails_once(self.path, origin.flaky_one_in):
            self._reply(503, b"busy, try again\n", {"Retry-After": "0"})
            return
        body = station_year_csv(station_id, year, origin.versions.get((station_id, year), 0))
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        if origin.etags and self.headers.get("If-None-Match") == etag:
            self._reply(304, b"", {"ETag": etag}, body_allowed=False)
            return
        headers = {"Content-Type": "text/csv; charset=utf-8"}
        if origin.etags:
            headers["ETag"] = etag
        with origin.lock:
            origin.bytes_sent += len(body)
        self._reply(200, body, headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None, *,
               body_allowed: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body_allowed:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body_allowed:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    origin: DemoOrigin


class DemoOrigin:
    """The sample origin; use as a context manager. ``url_template`` fits the demo job spec."""

    def __init__(self, stations: list[Station], *, latency_s: float = 0.0, flaky_one_in: int = 0,
                 host: str = "127.0.0.1", port: int = 0, etags: bool = True):
        self._years = {s.station_id: (s.first_year, s.last_year) for s in stations}
        self.latency_s = latency_s
        self.flaky_one_in = flaky_one_in
        self.requests: Counter[str] = Counter()
        self.etags = etags  # send ETags and answer If-None-Match with 304
        self.versions: dict[tuple[int, int], int] = {}  # revised station-years (see ``revise``)
        self.bytes_sent = 0
        self.lock = threading.Condition()
        self._server = _Server((host, port), _Handler)
        self._server.origin = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-origin", daemon=True)

    def serves(self, station_id: int, year: int) -> bool:
        years = self._years.get(station_id)
        return years is not None and years[0] <= year <= years[1]

    @property
    def host_port(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url_template(self) -> str:
        return f"http://{self.host_port}/climate/bulk?format=csv&stationID={{station_id}}&Year={{year}}"

    @property
    def total_requests(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def revise(self, station_id: int, year: int) -> None:
        """The origin publishes a corrected file for one station-year (new bytes, new ETag)."""
        with self.lock:
            self.versions[(station_id, year)] = self.versions.get((station_id, year), 0) + 1

    def wait_for_requests(self, count: int, *, timeout_s: float = 30.0) -> bool:
        """Block until the origin has seen ``count`` requests in all (False on timeout)."""
        with self.lock:
            return self.lock.wait_for(lambda: sum(self.requests.values()) >= count, timeout=timeout_s)

    def requests_for_year(self, year: int) -> int:
        """Requests seen for any station's ``year`` (tests count retries with it)."""
        with self.lock:
            return sum(n for path, n in self.requests.items() if path.endswith(f"&Year={year}"))

    def __enter__(self) -> DemoOrigin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

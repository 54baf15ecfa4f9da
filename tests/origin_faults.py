"""A fault-injecting HTTP origin on 127.0.0.1 over raw sockets, so tests can misbehave byte by byte
(resets, short bodies, stalls, trickles, redirect loops, gzip bombs), plus loopback canaries.

Every response closes its connection; every loop is bounded and ends at ``close()``.
"""

from __future__ import annotations

import gzip
import http
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import pytest

__all__ = [
    "Behaviour",
    "Canary",
    "FaultOrigin",
    "Request",
    "accept_never_answer",
    "close_delimited_cut",
    "fault_origin",
    "gzip_bomb",
    "ignores_range",
    "lying_length",
    "make_tls",
    "ok",
    "ranged",
    "redirect",
    "redirect_loop",
    "refused_port",
    "rendezvous",
    "reset_mid_body",
    "retry_after",
    "sequence",
    "short_body",
    "stall_after_headers",
    "status",
    "trickle",
]

_MAX_HEAD_BYTES = 64 * 1024
_MAX_CONNECTIONS = 500  # per origin: a runaway client loop ends here, not in a hung test run
_MAX_HOLD_S = 30.0  # longest a stalling behaviour keeps a connection if nobody closes the origin
_SEND_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Request:
    """One request as the origin saw it."""

    method: str
    target: str
    headers: Mapping[str, str]  # lower-cased names

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class _Exchange:
    """What a behaviour gets: the request, which request to this path it is, and the socket."""

    def __init__(self, conn: socket.socket, request: Request, nth: int, stop: threading.Event):
        self.conn = conn
        self.request = request
        self.nth = nth  # 1 for the first request to this path
        self._stop = stop
        self.reset_sent = False

    def shifted(self, by: int) -> _Exchange:
        view = _Exchange(self.conn, self.request, self.nth - by, self._stop)
        return view

    def send(self, data: bytes) -> bool:
        """Send ``data``; False once the client has gone."""
        try:
            self.conn.sendall(data)
            return True
        except OSError:
            return False

    def hold(self, seconds: float) -> bool:
        """Wait ``seconds``; True when the origin is closing (the behaviour must return)."""
        return self._stop.wait(seconds)

    def reset(self) -> None:
        """Abort with a TCP RST instead of a clean FIN."""
        self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.conn.close()
        self.reset_sent = True


class Behaviour(Protocol):
    def serve(self, ex: _Exchange) -> None: ...


def _head(code: int, headers: tuple[tuple[str, str], ...] = (), *, length: int | None = None) -> bytes:
    try:
        reason = http.HTTPStatus(code).phrase
    except ValueError:
        reason = "Status"
    names = {k.lower() for k, _ in headers}
    lines = [f"HTTP/1.1 {code} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is not None and "content-length" not in names:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _pairs(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((headers or {}).items())


@dataclass(frozen=True)
class _Ok:
    body: bytes
    headers: tuple[tuple[str, str], ...]
    code: int

    def serve(self, ex: _Exchange) -> None:
        ex.send(_head(self.code, self.headers, length=len(self.body)) + self.body)


@dataclass(frozen=True)
class _Status:
    code: int
    then: Behaviour | None
    times: int | None
    headers: tuple[tuple[str, str], ...] = ()

    def serve(self, ex: _Exchange) -> None:
        if self.then is not None and self.times is not None and ex.nth > self.times:
            self.then.serve(ex.shifted(self.times))
            return
        body = f"{self.code}\n".encode()
        ex.send(_head(self.code, self.headers, length=len(body)) + body)


@dataclass(frozen=True)
class _Cut:
    body: bytes
    after_bytes: int
    send_length: bool
    rst: bool
    headers: tuple[tuple[str, str], ...] = ()

    def serve(self, ex: _Exchange) -> None:
        length = len(self.body) if self.send_length else None
        if ex.send(_head(200, self.headers, length=length) + self.body[: self.after_bytes]):
            if self.rst:
                ex.reset()


@dataclass(frozen=True)
class _Stall:
    declared: int

    def serve(self, ex: _Exchange) -> None:
        if ex.send(_head(200, length=self.declared)):
            ex.hold(_MAX_HOLD_S)


@dataclass(frozen=True)
class _Trickle:
    interval_s: float
    declared: int

    def serve(self, ex: _Exchange) -> None:
        if not ex.send(_head(200, length=self.declared)):
            return
        for _ in range(min(self.declared, int(_MAX_HOLD_S / self.interval_s))):
            if not ex.send(b"x") or ex.hold(self.interval_s):
                return


@dataclass(frozen=True)
class _Silent:
    def serve(self, ex: _Exchange) -> None:
        ex.hold(_MAX_HOLD_S)


@dataclass(frozen=True)
class _Redirect:
    to: str | None  # None: back to the same path (a loop)
    code: int

    def serve(self, ex: _Exchange) -> None:
        location = self.to if self.to is not None else ex.request.target
        ex.send(_head(self.code, (("Location", location),), length=0))


@dataclass(frozen=True)
class _GzipBomb:
    decoded_bytes: int

    def serve(self, ex: _Exchange) -> None:
        body = _zeros_gzip(self.decoded_bytes)
        ex.send(_head(200, (("Content-Encoding", "gzip"),), length=len(body)) + body)


@lru_cache(maxsize=4)
def _zeros_gzip(size: int) -> bytes:
    return gzip.compress(bytes(size), compresslevel=9)


@dataclass(frozen=True)
class _LyingLength:
    declared: int
    actual: int

    def serve(self, ex: _Exchange) -> None:
        if not ex.send(_head(200, length=self.declared)):
            return
        block = b"L" * 65536
        remaining = self.actual
        while remaining > 0 and ex.send(block[: min(remaining, len(block))]):
            remaining -= len(block)


@dataclass(frozen=True)
class _Sequence:
    steps: tuple[Behaviour, ...]

    def serve(self, ex: _Exchange) -> None:
        index = min(ex.nth, len(self.steps)) - 1
        self.steps[index].serve(ex.shifted(index))


def ok(body: bytes = b"hello\n", headers: Mapping[str, str] | None = None, *, code: int = 200) -> Behaviour:
    """A good response; ``headers`` may override Content-Length (to lie about it)."""
    return _Ok(body, _pairs(headers), code)


def status(
    code: int,
    then: Behaviour | None = None,
    *,
    times: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Behaviour:
    """Answer ``code`` (``times`` times, then behave like ``then``; forever when either is None)."""
    return _Status(code, then, times if then is not None else None, _pairs(headers))


def retry_after(
    value: float | str, then: Behaviour | None = None, *, code: int = 503, times: int = 1
) -> Behaviour:
    """``code`` with ``Retry-After: value`` (seconds, or an HTTP-date string), then ``then``."""
    text = value if isinstance(value, str) else str(int(value))
    return status(code, then, times=times, headers={"Retry-After": text})


def http_date(epoch_s: float) -> str:
    """An RFC 9110 HTTP-date, e.g. for ``retry_after``."""
    return formatdate(epoch_s, usegmt=True)


def reset_mid_body(body: bytes = b"0123456789" * 100, after_bytes: int = 100) -> Behaviour:
    """Full Content-Length, ``after_bytes`` of the body, then a TCP reset."""
    return _Cut(body, after_bytes, send_length=True, rst=True)


def short_body(body: bytes = b"0123456789" * 100, after_bytes: int = 100) -> Behaviour:
    """Full Content-Length, fewer bytes, then a clean close."""
    return _Cut(body, after_bytes, send_length=True, rst=False)


def close_delimited_cut(
    body: bytes = b"0123456789" * 100, after_bytes: int = 100, headers: Mapping[str, str] | None = None
) -> Behaviour:
    """No Content-Length (body ends at close) and the connection closes early: looks complete.
    ``after_bytes=len(body)`` serves a whole close-delimited body."""
    return _Cut(body, after_bytes, send_length=False, rst=False, headers=_pairs(headers))


def stall_after_headers(declared: int = 1000) -> Behaviour:
    """Headers promising ``declared`` bytes, then silence."""
    return _Stall(declared)


def trickle(interval_s: float = 0.02, declared: int = 10**6) -> Behaviour:
    """Headers, then one byte every ``interval_s`` (read timeouts never fire)."""
    return _Trickle(interval_s, declared)


def accept_never_answer() -> Behaviour:
    """Accept and read the request, never answer."""
    return _Silent()


def redirect(to: str, *, code: int = 302) -> Behaviour:
    """Redirect to ``to`` (a path on this origin or an absolute URL)."""
    return _Redirect(to, code)


def redirect_loop(*, code: int = 302) -> Behaviour:
    """Redirect to the very URL that was requested."""
    return _Redirect(None, code)


def gzip_bomb(decoded_bytes: int = 16 * 2**20) -> Behaviour:
    """``Content-Encoding: gzip``: a few KiB on the wire, ``decoded_bytes`` of zeros decoded."""
    return _GzipBomb(decoded_bytes)


def lying_length(declared: int = 10, actual: int = 4 * 2**20) -> Behaviour:
    """Content-Length says ``declared`` but ``actual`` bytes follow."""
    return _LyingLength(declared, actual)


def ignores_range(body: bytes = b"0123456789" * 100) -> Behaviour:
    """200 with the whole body whatever ``Range`` asks for (the request log shows what was asked)."""
    return _Ok(body, (), 200)


class _Ranged:
    """A file that honours ``Range`` (206 + Content-Range) and conditional requests (304), with
    faults per part; counters are shared by every connection, so it is a class, not frozen."""

    def __init__(
        self,
        body: bytes,
        *,
        etag: str | None,
        last_modified: str | None,
        cut_part_times: Mapping[int, int],
        etags: tuple[str, ...] | None,
        range_support: str,
        meeting: _Meeting | None = None,
        stall_part_at: int | None = None,
    ):
        self.meeting = meeting
        self.stall_part_at = stall_part_at
        self.body = body
        self.etag = etag
        self.last_modified = last_modified
        self._cuts = dict(cut_part_times)
        self._etags = list(etags or ())
        self._at = 0
        self.range_support = range_support
        self._lock = threading.Lock()

    @property
    def max_parts_together(self) -> int:
        """With ``parts_meet``: the most ranged requests held at once."""
        return self.meeting.max_inside if self.meeting is not None else 0

    def _current_etag(self, ranged: bool) -> str | None:
        if not self._etags:
            return self.etag
        with self._lock:  # a whole-file request (a probe) sees a version, then the file changes
            etag = self._etags[self._at]
            if not ranged:
                self._at = min(self._at + 1, len(self._etags) - 1)
            return etag

    def serve(self, ex: _Exchange) -> None:
        headers = ex.request.headers
        asked = headers.get("range", "")
        ranged = asked.startswith("bytes=") and self.range_support == "yes"
        etag = self._current_etag(ranged)
        meta = [("Accept-Ranges", "bytes")]
        if etag is not None:
            meta.append(("ETag", etag))
        if self.last_modified is not None:
            meta.append(("Last-Modified", self.last_modified))
        inm, ims = headers.get("if-none-match"), headers.get("if-modified-since")
        if (inm is not None and inm == etag) or (inm is None and ims is not None and ims == self.last_modified):
            ex.send(_head(304, tuple(meta), length=0))
            return
        if not ranged:
            ex.send(_head(200, tuple(meta), length=len(self.body)) + self.body)
            return
        first_text, _, last_text = asked[len("bytes="):].partition("-")
        start, stop = int(first_text), min(int(last_text) + 1, len(self.body))
        if start >= len(self.body):
            ex.send(_head(416, (("Content-Range", f"bytes */{len(self.body)}"),), length=0))
            return
        if self.meeting is not None:
            self.meeting.meet()
            self.meeting.leave()
        meta.append(("Content-Range", f"bytes {start}-{stop - 1}/{len(self.body)}"))
        part = self.body[start:stop]
        with self._lock:
            cut = self._cuts.get(start, 0) > 0
            if cut:
                self._cuts[start] -= 1
        if start == self.stall_part_at:  # headers, then silence
            if ex.send(_head(206, tuple(meta), length=len(part))):
                ex.hold(_MAX_HOLD_S)
            return
        if cut:  # half the part, then a reset
            if ex.send(_head(206, tuple(meta), length=len(part)) + part[: len(part) // 2]):
                ex.reset()
            return
        ex.send(_head(206, tuple(meta), length=len(part)) + part)


def ranged(
    body: bytes,
    *,
    etag: str | None = '"v1"',
    last_modified: str | None = "Wed, 21 Oct 2015 07:28:00 GMT",
    cut_part_times: Mapping[int, int] | None = None,
    etags: tuple[str, ...] | None = None,
    range_support: str = "yes",
    parts_meet: int | None = None,
    stall_part_at: int | None = None,
) -> _Ranged:
    """A file served with ``Accept-Ranges: bytes``: 206 parts for ``Range``, 304 for a matching
    If-None-Match / If-Modified-Since. ``cut_part_times[start]`` = how many times the part at
    byte ``start`` is cut short by a reset. ``etags``: the file changes; a whole-file request sees
    the current ETag and moves the file on to the next (the last one stays), parts see the current.
    ``range_support="ignored"``: advertises ranges but answers every request with the whole file.
    ``parts_meet=n``: a ranged request is answered only once ``n`` of them wait together (or
    after 0.25 s), so ``max_parts_together`` shows how many were in flight at once.
    ``stall_part_at``: the part starting at that byte sends its headers, then nothing."""
    return _Ranged(
        body,
        etag=etag,
        last_modified=last_modified,
        cut_part_times=cut_part_times or {},
        etags=etags,
        range_support=range_support,
        meeting=_Meeting(parts_meet, 0.25) if parts_meet else None,
        stall_part_at=stall_part_at,
    )


class _Meeting:
    """Lets each caller through only when ``parties`` callers wait together (or after ``timeout_s``).

    ``max_inside`` is the most callers ever between ``meet()`` and ``leave()`` at once; callers
    leave before answering, so a client cannot have released its slot while still counted here.
    """

    def __init__(self, parties: int, timeout_s: float):
        self.parties = parties
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._waiting = 0
        self._generation = 0
        self._inside = 0
        self.max_inside = 0

    def meet(self) -> None:
        with self._cond:
            self._inside += 1
            self.max_inside = max(self.max_inside, self._inside)
            self._waiting += 1
            generation = self._generation
            if self._waiting >= self.parties:
                self._generation += 1
                self._waiting = 0
                self._cond.notify_all()
                return
            self._cond.wait_for(lambda: self._generation != generation, timeout=self.timeout_s)
            if self._generation == generation:
                self._waiting -= 1

    def leave(self) -> None:
        with self._cond:
            self._inside -= 1


@dataclass(frozen=True)
class _Rendezvous:
    body: bytes
    meeting: _Meeting

    @property
    def max_together(self) -> int:
        """The most requests this behaviour ever held at once."""
        return self.meeting.max_inside

    def serve(self, ex: _Exchange) -> None:
        self.meeting.meet()
        self.meeting.leave()
        ex.send(_head(200, length=len(self.body)) + self.body)


def rendezvous(body: bytes = b"hello\n", *, parties: int, timeout_s: float = 0.5) -> _Rendezvous:
    """Answer only when ``parties`` requests are in flight together, or after ``timeout_s``:
    ``.max_together`` then shows the client's concurrency without timing luck."""
    return _Rendezvous(body, _Meeting(parties, timeout_s))


def sequence(*steps: Behaviour) -> Behaviour:
    """The n-th request gets the n-th behaviour; the last one repeats."""
    if not steps:
        raise ValueError("sequence needs at least one behaviour")
    return _Sequence(tuple(steps))


@dataclass
class FaultOrigin:
    """A threaded HTTP/1.1 origin on ``host`` (loopback only) serving behaviours per path."""

    host: str = "127.0.0.1"
    port: int = 0
    tls: ssl.SSLContext | None = None
    _routes: dict[str, Behaviour] = field(default_factory=dict)
    _counts: Counter[str] = field(default_factory=Counter)
    _log: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _conns: list[socket.socket] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        if not self.host.startswith("127."):
            raise ValueError("the fault origin listens on loopback only")
        self._listener = socket.create_server((self.host, self.port))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        acceptor = threading.Thread(target=self._accept_loop, name="fault-origin-accept", daemon=True)
        self._threads.append(acceptor)
        acceptor.start()

    def url(self, path: str) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def add(self, path: str, behaviour: Behaviour) -> str:
        """Serve ``behaviour`` at ``path``; return its URL."""
        with self._lock:
            self._routes[path] = behaviour
        return self.url(path)

    def requests(self, path: str) -> int:
        """How many requests reached ``path``."""
        with self._lock:
            return self._counts[path]

    def log(self, path: str) -> list[Request]:
        """The requests that reached ``path``, in order."""
        with self._lock:
            return [r for r in self._log if r.path == path]

    def close(self) -> None:
        """Stop accepting, cut every connection, and join every thread (raise if one hangs)."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in list(self._threads):
            thread.join(timeout=5)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"fault origin threads did not stop: {alive}")

    def _accept_loop(self) -> None:
        while not self._stop.is_set() and self.connections < _MAX_CONNECTIONS:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            worker = threading.Thread(target=self._serve, args=(conn,), name="fault-origin-conn", daemon=True)
            with self._lock:
                self._conns.append(conn)
                self._threads.append(worker)
            worker.start()

    def _serve(self, raw: socket.socket) -> None:
        conn = raw
        try:
            if self.tls is not None:
                raw.settimeout(_SEND_TIMEOUT_S)
                conn = self.tls.wrap_socket(raw, server_side=True)
            request = self._read_request(conn)
            if request is None:
                return
            with self._lock:
                self._counts[request.path] += 1
                self._log.append(request)
                nth = self._counts[request.path]
                behaviour = self._routes.get(request.path, _Status(404, None, None))
            conn.settimeout(_SEND_TIMEOUT_S)
            exchange = _Exchange(conn, request, nth, self._stop)
            behaviour.serve(exchange)
            if not exchange.reset_sent:
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def _read_request(self, conn: socket.socket) -> Request | None:
        conn.settimeout(0.05)
        data = b""
        for _ in range(int(_MAX_HOLD_S / 0.05)):
            if self._stop.is_set() or len(data) > _MAX_HEAD_BYTES:
                return None
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return None
            data += chunk
            if b"\r\n\r\n" in data:
                break
        else:
            return None
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target, _ = (head[0].split(" ", 2) + ["", ""])[:3]
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Request(method, target, headers)


class Canary:
    """A loopback listener that must never be contacted. The kernel completes a TCP handshake
    into the backlog before anyone accepts, so ``connections`` (which drains the backlog) counts
    every connection made so far, without a thread and without waiting."""

    def __init__(self, host: str = "127.0.0.2", port: int = 0):
        if not host.startswith("127."):
            raise ValueError("canaries listen on loopback only")
        self._listener = socket.create_server((host, port), backlog=64)
        self._listener.setblocking(False)
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self._seen = 0

    @property
    def connections(self) -> int:
        while True:
            try:
                conn, _ = self._listener.accept()
            except BlockingIOError:
                return self._seen
            self._seen += 1
            conn.close()

    def close(self) -> None:
        self._listener.close()


def make_tls(folder: Path, name: str) -> tuple[Path, ssl.SSLContext, list[str]]:
    """A test CA (written to ``folder/ca.pem``) and a server context whose certificate covers only
    ``name``; the list collects the SNI names clients send. Needs ``cryptography``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fanfetch test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    chain_file = folder / "server.pem"
    key_bytes = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    chain_file.write_bytes(cert.public_bytes(pem) + key_bytes)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file)
    sni_seen: list[str] = []

    def record_sni(sock: Any, server_name: str | None, ctx: Any) -> None:
        sni_seen.append(server_name or "")

    context.sni_callback = record_sni
    return ca_file, context, sni_seen


def refused_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` with no listener (bound, then released), so connecting is refused."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def fault_origin() -> Iterator[FaultOrigin]:
    """A fault-injecting origin on 127.0.0.1, stopped (threads joined) at teardown."""
    origin = FaultOrigin()
    try:
        yield origin
    finally:
        origin.close()

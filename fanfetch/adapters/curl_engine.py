"""libcurl's multi interface on ONE I/O thread: callers submit transfers and wait on a future.

The thread drives ``curl_multi_socket_action`` over an epoll selector (no fd limit, no busy loop);
libcurl does the timeouts, the low-speed guard, connection reuse and HTTP framing. What a transfer
does with its headers, bytes and sockets is the ``Transfer`` object's business (curl_fetcher.py).
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import pycurl

__all__ = ["CurlEngine", "Done", "Transfer", "EngineClosed", "Cancelled", "SILENCE"]

_THREAD_NAME = "fanfetch-curl"
_SILENCE_CHECK_S = 0.05  # how often transfers are checked for silence (read timeout)
SILENCE = -1  # Done.code of a transfer the engine cut for silence (no byte for ``silence_s``)
CANCELLED = -2  # Done.code of a transfer cancelled by ``cancel_all``


CONFIGURE = -3  # Done.code of a transfer whose ``configure`` raised (``start``: the error is ``transfer.error``)


class _Callback:
    """``start``'s waiter: quacks like the Future the loop completes, calls ``on_done`` instead."""

    __slots__ = ("on_done",)

    def __init__(self, on_done: Callable[[Done], None]):
        self.on_done = on_done

    def set_result(self, done: Done) -> None:
        self.on_done(done)


class EngineClosed(RuntimeError):
    """The engine was closed: no more transfers."""


class Cancelled(Exception):
    """Internal: the transfer was cancelled (the run is aborting)."""


@dataclass(frozen=True)
class Done:
    """How a transfer ended: libcurl's result code and message plus the facts read off the handle."""

    code: int  # 0 = ok, a CURLE_* code, or SILENCE / CANCELLED
    message: str
    status: int  # last HTTP status (0: none)
    retry_after_s: float | None  # CURLINFO_RETRY_AFTER (seconds or HTTP-date, parsed by libcurl)
    redirect_url: str | None  # CURLINFO_REDIRECT_URL: where a 3xx points (resolved, encoded by libcurl)
    os_errno: int = 0  # CURLINFO_OS_ERRNO: the socket error behind a failure (0: libcurl's own verdict)


class Transfer(Protocol):
    """What the engine needs from a transfer: its options and its callbacks (run on the I/O thread)."""

    silence_s: float | None  # cut the transfer after this long without a byte (None: never)

    def configure(self, easy: pycurl.Curl) -> None:
        """Set URL, headers, timeouts and callbacks on a freshly reset handle. A transfer with a ``shares``
        attribute (not None) also takes ``constant=False``: the handle was set up by one sharing it, not reset."""
        ...


class CurlEngine:
    """One multi handle, one I/O thread; thread-safe ``submit`` returning a Future[Done]."""

    def __init__(self, *, max_connections: int = 64):
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_MAXCONNECTS, max(1, max_connections))
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._pending: deque[tuple[Transfer, Future[Done]]] = deque()
        self._active: dict[pycurl.Curl, tuple[Transfer, Future[Done], list[Any]]] = {}
        self._free: list[pycurl.Curl] = []
        # what set a handle up last (Transfer.shares): a transfer sharing it skips the reset and the constant options
        self._set_up_for: dict[pycurl.Curl, object] = {}
        self._timer_at: float | None = None
        self._closed = False
        self._cancel = False
        self._thread: threading.Thread | None = None
        self._last_silence_check = 0.0
        self._wake_sent = False  # a wake-up byte is on its way: more submits need no syscall of their own

    @property
    def thread(self) -> threading.Thread | None:
        """The I/O thread (None until the first transfer)."""
        return self._thread

    # --- caller side -------------------------------------------------------------------------------

    def submit(self, transfer: Transfer) -> Future[Done]:
        future: Future[Done] = Future()
        self._enqueue(transfer, future)
        return future

    def start(self, transfer: Transfer, on_done: Callable[[Done], None]) -> None:
        """Like ``submit`` without a Future: ``on_done(done)`` runs on the I/O thread as the transfer ends
        (it must not block); an error from ``configure`` is passed on as ``Done`` with ``code=CONFIGURE``
        and the exception in ``transfer.error``."""
        self._enqueue(transfer, _Callback(on_done))

    def _enqueue(self, transfer: Transfer, waiter: Future[Done] | _Callback) -> None:
        with self._lock:
            if self._closed:
                raise EngineClosed("the HTTP engine is closed")
            self._pending.append((transfer, waiter))  # type: ignore[arg-type]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)
                self._thread.start()
            if self._wake_sent:
                return  # a wake-up byte is on its way already
            self._wake_sent = True
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    def cancel_all(self) -> None:
        """Abort every transfer in flight or waiting: each future ends with code CANCELLED."""
        with self._lock:
            self._cancel = True
        self._wake()

    def close(self) -> None:
        """Cancel what is in flight, stop the I/O thread and free libcurl's handles."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        if thread is None or not thread.is_alive():
            self._release()

    def _wake(self) -> None:
        with self._lock:
            if self._wake_sent:
                return
            self._wake_sent = True
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # the buffer is full: the loop is awake anyway, or closed

    # --- libcurl callbacks (I/O thread) ---------------------------------------------------------------

    def _on_socket(self, event: int, fd: int, multi: Any, data: Any) -> None:
        if event == pycurl.POLL_REMOVE:
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError):
                pass
            return
        mask = 0
        if event in (pycurl.POLL_IN, pycurl.POLL_INOUT):
            mask |= selectors.EVENT_READ
        if event in (pycurl.POLL_OUT, pycurl.POLL_INOUT):
            mask |= selectors.EVENT_WRITE
        try:
            self._selector.modify(fd, mask, fd)
        except KeyError:
            self._selector.register(fd, mask, fd)

    def _on_timer(self, timeout_ms: int) -> None:
        self._timer_at = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0

    # --- the loop ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    self._wake_sent = False  # from here on a submit must wake the loop again
                    closed, cancel = self._closed, self._cancel
                    self._cancel = False
                    pending = list(self._pending)
                    self._pending.clear()
                if closed or cancel:
                    for _transfer, future in pending:
                        future.set_result(_ended(CANCELLED, "cancelled"))
                    self._abort_active("cancelled")
                    if closed:
                        return
                    continue
                for transfer, future in pending:
                    self._start(transfer, future)
                self._poll()
                self._collect()
                self._check_silence()
        except BaseException as exc:  # a bug in the loop must not leave callers waiting forever
            self._abort_active(f"HTTP engine failed: {type(exc).__name__}: {exc}")
            with self._lock:
                self._closed = True
                for _, future in self._pending:
                    future.set_result(_ended(CANCELLED, "HTTP engine stopped"))
                self._pending.clear()
            raise

    def _start(self, transfer: Transfer, future: Future[Done]) -> None:
        easy = self._free.pop() if self._free else pycurl.Curl()
        shares = getattr(transfer, "shares", None)
        try:
            if shares is not None and self._set_up_for.get(easy) is shares:
                transfer.configure(easy, constant=False)  # type: ignore[call-arg]
            else:
                easy.reset()
                self._set_up_for[easy] = shares
                transfer.configure(easy)
        except BaseException as exc:
            self._set_up_for.pop(easy, None)
            self._free.append(easy)
            if isinstance(future, _Callback):
                transfer.error = exc  # type: ignore[attr-defined]
                future.set_result(_ended(CONFIGURE, f"configure failed: {exc}"))
            else:
                future.set_exception(exc)
            return
        self._active[easy] = (transfer, future, [time.monotonic(), 0])  # [last activity seen here, header bytes]
        self._multi.add_handle(easy)

    def _poll(self) -> None:
        now = time.monotonic()
        timeout = None if self._timer_at is None else max(0.0, self._timer_at - now)
        if any(t.silence_s is not None for t, _, _ in self._active.values()):
            timeout = _SILENCE_CHECK_S if timeout is None else min(timeout, _SILENCE_CHECK_S)
        events = self._selector.select(timeout)
        for key, mask in events:
            if key.data is None:  # the wake-up socket
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
                continue
            action = 0
            if mask & selectors.EVENT_READ:
                action |= pycurl.CSELECT_IN
            if mask & selectors.EVENT_WRITE:
                action |= pycurl.CSELECT_OUT
            self._socket_action(key.data, action)
        if self._timer_at is not None and time.monotonic() >= self._timer_at:
            self._timer_at = None
            self._socket_action(pycurl.SOCKET_TIMEOUT, 0)

    def _socket_action(self, fd: int, action: int) -> None:
        while True:
            ret, _ = self._multi.socket_action(fd, action)
            if ret != pycurl.E_CALL_MULTI_PERFORM:
                return

    def _collect(self) -> None:
        while True:
            queued, succeeded, failed = self._multi.info_read()
            for easy in succeeded:
                self._finish(easy, 0, "")
            for easy, code, message in failed:
                self._finish(easy, code, message)
            if not queued:
                return

    def _finish(self, easy: pycurl.Curl, code: int, message: str) -> None:
        entry = self._active.pop(easy, None)
        self._multi.remove_handle(easy)
        done = _read_done(easy, code, message)
        self._free.append(easy)
        if entry is not None:
            entry[1].set_result(done)

    def _check_silence(self) -> None:
        now = time.monotonic()
        if now - self._last_silence_check < _SILENCE_CHECK_S:
            return
        self._last_silence_check = now
        for easy, (transfer, _, last) in list(self._active.items()):
            silence = transfer.silence_s
            if silence is None:
                continue
            idle = now - _last_activity(transfer, last[0])
            if idle < _SILENCE_CHECK_S:
                continue
            # header lines reach no Python callback that could note them: libcurl counts their bytes
            seen = easy.getinfo(pycurl.HEADER_SIZE)
            if seen != last[1]:
                last[0], last[1] = now, seen
            elif idle >= silence:
                self._finish(easy, SILENCE, f"no data for {silence:g} s")

    def _abort_active(self, reason: str) -> None:
        for easy in list(self._active):
            try:
                self._finish(easy, CANCELLED, reason)
            except pycurl.error:
                pass

    def _release(self) -> None:
        for easy in self._free:
            easy.close()
        self._free.clear()
        self._set_up_for.clear()
        try:
            self._multi.close()
        except pycurl.error:
            pass
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


def _last_activity(transfer: Transfer, started: float) -> float:
    return max(started, getattr(transfer, "last_activity", 0.0))


def _ended(code: int, message: str) -> Done:
    return Done(code=code, message=message, status=0, retry_after_s=None, redirect_url=None)


def _read_done(easy: pycurl.Curl, code: int, message: str) -> Done:
    status = easy.getinfo(pycurl.RESPONSE_CODE)
    retry_after = easy.getinfo(pycurl.RETRY_AFTER) if status in (429, 503) or 300 <= status < 400 else 0
    redirect = easy.getinfo(pycurl.REDIRECT_URL) if 300 <= status < 400 else None
    return Done(
        code=code,
        message=message,
        status=status,
        retry_after_s=float(retry_after) if retry_after and retry_after > 0 else None,
        redirect_url=redirect or None,
        os_errno=int(easy.getinfo(pycurl.OS_ERRNO)) if code else 0,
    )


def socket_opener(check: Callable[[int, str, int], bool], refused: Callable[[str, int], None]) -> Callable[..., Any]:
    """An OPENSOCKETFUNCTION: opens the socket only when ``check(family, ip, port)`` approves the
    address libcurl is about to dial; otherwise records it with ``refused`` and returns SOCKET_BAD."""

    def open_socket(purpose: int, address: Any) -> Any:
        family, socktype, protocol, sockaddr = address
        ip, port = str(sockaddr[0]), int(sockaddr[1])
        if not check(family, ip, port):
            refused(ip, port)
            return pycurl.SOCKET_BAD
        return socket.socket(family, socktype, protocol)

    return open_socket

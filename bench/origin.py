"""A benchmark origin that is not the bottleneck: nginx (Debian, with the echo module) on 127.0.0.1.

``echo_sleep`` adds the per-request latency, ``echo_exec`` then serves the static file (Range works
through it), ``limit_rate`` caps each connection. Without nginx a threaded Python server stands in
(the CI smoke uses it); it tops out near 600 requests/s, so real numbers need nginx.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Origin", "NginxOrigin", "PythonOrigin", "start_origin", "nginx_available", "launch_nginx", "stop_nginx",
           "ECHO_MODULE"]

ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"

# Every config's first lines (the run-as user, foreground, logs and pid in the temp folder) and, inside http { },
# its temp paths there (nginx's compiled-in defaults may not be writable).
_HEAD = """\
{user}daemon off;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
"""
_TEMP_PATHS = """\
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
"""
_CONFIG = """\
load_module {echo_module};
{head}worker_processes {workers};
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
{temp_paths}    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location / {{
            {sleep}
            echo_exec @file;
        }}
        location @file {{
            {rate}
            try_files $uri =404;
        }}
    }}
}}
"""


class Origin:
    """What a scenario needs from an origin: where it listens, and a way to stop it."""

    kind: str
    base_url: str

    @property
    def host_port(self) -> str:
        return self.base_url.split("//", 1)[1].rstrip("/")

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Origin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def nginx_available() -> bool:
    return shutil.which("nginx") is not None and os.path.exists(ECHO_MODULE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NginxOrigin(Origin):
    """nginx serving ``root`` with ``latency_s`` before each response and ``rate_bytes_s`` per connection."""

    kind = "nginx"

    def __init__(
        self, root: str, *, latency_s: float = 0.0, rate_bytes_s: int | None = None, workers: int = 1
    ):
        if shutil.which("nginx") is None or not os.path.exists(ECHO_MODULE):
            raise RuntimeError("nginx with libnginx-mod-http-echo is not installed (see bench/README.md)")
        self._tmp, port, self._proc = launch_nginx(
            _CONFIG, prefix="fanfetch-nginx-",
            echo_module=ECHO_MODULE,
            workers=workers,
            root=os.path.abspath(root),
            sleep=f"echo_sleep {latency_s:.3f};" if latency_s > 0 else "",
            rate=f"limit_rate {rate_bytes_s};" if rate_bytes_s else "",
        )
        self.base_url = f"http://127.0.0.1:{port}/"

    def stop(self) -> None:
        stop_nginx(self._proc, self._tmp)


def launch_nginx(config: str, *, prefix: str, **values: object) -> tuple[str, int, subprocess.Popen[Any]]:
    """Run nginx on a free loopback port with ``config`` (a template: ``{head}``, ``{temp_paths}``, ``{tmp}`` and
    ``{port}`` are filled in here, the rest from ``values``) in a new temp folder; return (folder, port, process)
    once it listens."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    port = _free_port()
    conf_path = os.path.join(tmp, "nginx.conf")
    with open(conf_path, "w", encoding="utf-8") as handle:
        handle.write(config.format(head=_HEAD.format(user=_user_directive(), tmp=tmp),
                                   temp_paths=_TEMP_PATHS.format(tmp=tmp), tmp=tmp, port=port, **values))
    proc = subprocess.Popen([shutil.which("nginx") or "nginx", "-p", tmp, "-c", conf_path, "-e", f"{tmp}/error.log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_listening(port, proc)
    return tmp, port, proc


def stop_nginx(proc: subprocess.Popen[Any], tmp: str) -> None:
    """Stop what ``launch_nginx`` started (killed if it does not exit within 10 s) and remove its folder."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


def _user_directive() -> str:
    """Run as root, nginx's workers drop to ``nobody``, which cannot read a 0700 temp folder: stay us."""
    if os.geteuid() != 0:
        return ""
    return "user root root;\n"


def _wait_listening(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"nginx exited with {proc.returncode}: {err.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on 127.0.0.1:{port}")


class _QuietHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    latency_s = 0.0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.latency_s:
            time.sleep(self.latency_s)
        super().do_GET()


class PythonOrigin(Origin):
    """Fallback: a threaded stdlib server (no Range, no rate cap); fine for the smoke, not for numbers."""

    kind = "python"

    def __init__(
        self, root: str, *, latency_s: float = 0.0, rate_bytes_s: int | None = None, workers: int = 1
    ):
        handler = type("Handler", (_QuietHandler,), {"latency_s": latency_s})
        directory = os.path.abspath(root)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=directory))  # type: ignore[misc]
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class OriginChoice:
    prefer: str = "auto"  # auto | nginx | python


def start_origin(
    root: str,
    *,
    latency_s: float = 0.0,
    rate_bytes_s: int | None = None,
    prefer: str = "auto",
    workers: int = 1,
) -> Origin:
    """nginx when installed (or required with ``prefer="nginx"``), else the Python fallback."""
    if prefer == "nginx" or (prefer == "auto" and nginx_available()):
        return NginxOrigin(root, latency_s=latency_s, rate_bytes_s=rate_bytes_s, workers=workers)
    return PythonOrigin(root, latency_s=latency_s, rate_bytes_s=rate_bytes_s)

"""In-memory fakes of the ports in ``fanfetch.ports``; tests assert on their state."""

from __future__ import annotations

import threading


class FakeClock:
    """A clock whose time moves only when someone sleeps (or a test calls ``advance``).

    ``sleeps`` records every requested sleep, so tests can assert on backoff without waiting.
    """

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeFetcher:
    """Serves bodies from a dict; a value that is an exception (or a list of them, then a body) is raised.

    ``calls`` counts fetches per URL.
    """

    def __init__(self, bodies: dict[str, object]):
        self._plans = {url: list(v) if isinstance(v, list) else [v] for url, v in bodies.items()}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def fetch(self, source, dest, *, deadline=None):
        from fanfetch.core.models import FileResult

        with self._lock:
            self.calls[source.url] = self.calls.get(source.url, 0) + 1
            plan = self._plans[source.url]
            step = plan.pop(0) if len(plan) > 1 else plan[0]
        if isinstance(step, BaseException):
            raise step
        dest.write(step)
        return FileResult(url=source.url, bytes=len(step), attempts=1)


class MemoryStore:
    """An ObjectStore in a dict: ``objects[key] = bytes``; ``puts`` counts writes per key."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.sha: dict[str, str] = {}
        self.puts: dict[str, int] = {}
        self.fail_with: BaseException | None = None
        self._lock = threading.Lock()

    def head(self, key):
        from fanfetch.ports import StoredObject

        with self._lock:
            if key not in self.objects:
                return None
            return StoredObject(key=key, size=len(self.objects[key]), sha256=self.sha.get(key))

    def put_file(self, key, path, *, sha256):
        from fanfetch.ports import StoredObject

        if self.fail_with is not None:
            raise self.fail_with
        with open(path, "rb") as handle:
            data = handle.read()
        with self._lock:
            self.objects[key] = data
            self.sha[key] = sha256
            self.puts[key] = self.puts.get(key, 0) + 1
        return StoredObject(key=key, size=len(data), sha256=sha256)

    def put_bytes(self, key, data, *, content_type="application/octet-stream"):
        import hashlib

        with self._lock:
            self.objects[key] = bytes(data)
            self.sha[key] = hashlib.sha256(data).hexdigest()
            self.puts[key] = self.puts.get(key, 0) + 1


class MemoryQueue:
    """A WorkQueue that keeps what it was sent."""

    def __init__(self):
        self.bodies: list[str] = []

    def send_messages(self, bodies):
        self.bodies.extend(bodies)
        return len(bodies)

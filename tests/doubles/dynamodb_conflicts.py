"""A DynamoDB front with real DynamoDB's contention: moto behind it, one request at a time, transactions that
hold their items and conflict as AWS documents. Point botocore at it with ``AWS_ENDPOINT_URL_DYNAMODB``.

Why: moto applies every request instantly and never reports a conflict, and its server is not thread-safe
(concurrent requests give 500s and lost updates). Code that funnels every write through one item passes
under moto and fails on AWS. This front serialises all access to moto and adds what AWS does
(Amazon DynamoDB Developer Guide, "Transaction conflict handling in DynamoDB",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling;
API Reference, TransactWriteItems / TransactionCanceledException / TransactionConflictException,
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html):

- a ``TransactWriteItems`` is admitted when moto takes it (requests queued behind others are not in progress
  yet), applied, and then holds each item it touched (Put, Update, Delete, ConditionCheck) for ``hold_s``
  (25 ms by default, the order of a real transaction's two-phase commit) before it answers;
- a ``TransactWriteItems`` touching an item that another transaction holds, or that a plain write or a
  ``TransactGetItems`` is working on, is cancelled at once: HTTP 400,
  ``{"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException", "Message": "Transaction
  cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]",
  "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict", "Message": "Transaction is ongoing
  for the item"}]}`` — one reason per action, in request order, ``"None"`` for the actions that did not conflict;
- a ``PutItem`` / ``UpdateItem`` / ``DeleteItem`` on an item a transaction holds is rejected: HTTP 400,
  ``{"__type": "com.amazonaws.dynamodb.v20120810#TransactionConflictException", "message": "Transaction is
  ongoing for the item"}`` (botocore does not retry it: it is in neither its standard nor legacy retry lists);
- a ``TransactGetItems`` touching an item a write transaction or plain write is working on is cancelled the
  same way as a write transaction;
- ``BatchWriteItem``'s puts/deletes on held items are returned in ``UnprocessedItems`` (the batch's documented
  way of handing back item-level failures) and counted as conflicted plain writes; the others are written.
Reads (``GetItem``, ``Query``, ``Scan``) never conflict and see what moto applied (read-committed).

Counters (``stats()``, or ``GET /_conflicts/stats`` on the front): transactions and how many were cancelled for
a conflict, plain writes and how many conflicted, and the most-written items — the fleet bench prints them.

Use it in-process (``with serve_dynamodb_conflicts() as ddb: boto3.client("dynamodb", endpoint_url=ddb.url)``),
on the core alone (``ConflictingDynamoDB.handle``, with an injected ``hold`` so tests never sleep), or as its
own process: ``python -m tests.doubles.dynamodb_conflicts --port 0 [--upstream http://127.0.0.1:5000]``
prints ``endpoint http://127.0.0.1:PORT`` and serves until SIGTERM. Without ``--upstream`` the backend is moto's
DynamoDB app in this process (no mock needed); with it, requests are forwarded to a moto server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = [
    "ConflictStats",
    "ConflictingDynamoDB",
    "DynamoDBConflictServer",
    "InProcessMoto",
    "MotoUpstream",
    "Reply",
    "serve_dynamodb_conflicts",
]

TARGET_PREFIX = "DynamoDB_20120810."
STATS_PATH = "/_conflicts/stats"
_ERROR_NAMESPACE = "com.amazonaws.dynamodb.v20120810#"
_CONFLICT_MESSAGE = "Transaction is ongoing for the item"
_PLAIN_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_PASSED_HEADERS = ("content-type", "x-amzn-requestid", "x-amz-crc32", "x-amzn-errortype")


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, headers, body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Backend(Protocol):
    """Where requests go once admitted: moto, in this process or behind a URL. Called one at a time."""

    def call(self, target: str, body: bytes, headers: Mapping[str, str]) -> Reply: ...


class InProcessMoto:
    """moto's DynamoDB server app in this process (the global moto backend; no ``mock_aws`` needed)."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        self._client = create_backend_app("dynamodb").test_client()

    def call(self, target: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
        sent["X-Amz-Target"] = target
        sent.setdefault("Content-Type", "application/x-amz-json-1.0")
        sent.setdefault("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request")
        response = self._client.post("/", data=body, headers=sent)
        return Reply(response.status_code, _pass_headers(response.headers.items()), response.get_data())


class MotoUpstream:
    """A moto server (or anything speaking DynamoDB's JSON protocol) at ``url``, over one kept-alive connection."""

    def __init__(self, url: str, *, timeout_s: float = 60.0) -> None:
        parts = urlsplit(url)
        self._host, self._port, self._timeout_s = parts.hostname or "127.0.0.1", parts.port or 80, timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def call(self, target: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        sent["X-Amz-Target"] = target
        for attempt in (1, 2):  # a kept-alive connection the server closed is reopened once
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
            try:
                self._conn.request("POST", "/", body=body, headers=sent)
                response = self._conn.getresponse()
                return Reply(response.status, _pass_headers(response.getheaders()), response.read())
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class ConflictStats:
    """What the front saw. ``conflicts / writes`` is the share of ledger writes that contention cost."""

    requests: int = 0
    transactions: int = 0  # TransactWriteItems requests
    transactions_cancelled: int = 0  # ... cancelled for a TransactionConflict
    plain_writes: int = 0  # PutItem / UpdateItem / DeleteItem (+ each BatchWriteItem entry)
    plain_write_conflicts: int = 0  # ... rejected: TransactionConflictException (or left unprocessed)
    transact_gets: int = 0
    transact_gets_cancelled: int = 0
    hottest_items: tuple[tuple[str, int], ...] = field(default_factory=tuple)  # (item, write attempts), top 5

    @property
    def writes(self) -> int:
        return self.transactions + self.plain_writes

    @property
    def conflicts(self) -> int:
        return self.transactions_cancelled + self.plain_write_conflicts

    @property
    def conflict_ratio(self) -> float:
        return self.conflicts / self.writes if self.writes else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hottest_items"] = [list(pair) for pair in self.hottest_items]
        data.update(writes=self.writes, conflicts=self.conflicts, conflict_ratio=round(self.conflict_ratio, 4))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConflictStats:
        names = {f for f in cls.__dataclass_fields__ if f != "hottest_items"}
        return cls(**{k: int(data[k]) for k in names},
                   hottest_items=tuple((str(k), int(n)) for k, n in data.get("hottest_items", ())))


class ConflictingDynamoDB:
    """The conflict rules over a serialised backend; ``handle`` is called from many threads at once.

    ``hold(seconds)`` is how a transaction (``hold_s``) or a plain write (``write_hold_s``) spends its
    time holding items; ``time.sleep`` by default, a blocking fake in tests of the double.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        hold_s: float = 0.025,
        write_hold_s: float = 0.0,
        hold: Callable[[float], None] = time.sleep,
    ) -> None:
        self._backend = backend if backend is not None else InProcessMoto()
        self.hold_s, self.write_hold_s, self._hold = hold_s, write_hold_s, hold
        self._backend_lock = threading.Lock()  # moto is not thread-safe: one request at a time
        self._state = threading.Lock()  # guards everything below
        self._tx_held: Counter[str] = Counter()  # items inside a TransactWriteItems
        self._writing: Counter[str] = Counter()  # items a plain write is writing
        self._reading: Counter[str] = Counter()  # items inside a TransactGetItems
        self._counts: Counter[str] = Counter()
        self._item_writes: Counter[str] = Counter()
        self._key_names: dict[str, tuple[str, ...] | None] = {}

    # --- entry point -------------------------------------------------------------------------------

    def handle(self, target: str, body: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        """Answer one DynamoDB JSON-protocol request (``target`` is the X-Amz-Target header)."""
        headers = dict(headers or {})
        operation = target.removeprefix(TARGET_PREFIX)
        with self._state:
            self._counts["requests"] += 1
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return self._forward(target, body, headers)
        if operation == "TransactWriteItems":
            return self._transact_write(target, body, headers, request)
        if operation == "TransactGetItems":
            return self._transact_get(target, body, headers, request)
        if operation in _PLAIN_WRITES:
            return self._plain_write(target, body, headers, request)
        if operation == "BatchWriteItem":
            return self._batch_write(target, headers, request)
        return self._forward(target, body, headers)

    def stats(self) -> ConflictStats:
        with self._state:
            counts = dict(self._counts)
            hottest = tuple(self._item_writes.most_common(5))
        return ConflictStats(**{name: counts.get(name, 0) for name in (
            "requests", "transactions", "transactions_cancelled", "plain_writes", "plain_write_conflicts",
            "transact_gets", "transact_gets_cancelled")}, hottest_items=hottest)

    def reset_stats(self) -> None:
        with self._state:
            self._counts.clear()
            self._item_writes.clear()

    # --- operations ---------------------------------------------------------------------------------

    def _transact_write(self, target: str, body: bytes, headers: dict[str, str], request: dict[str, Any]) -> Reply:
        items = [self._action_item(action, headers) for action in request.get("TransactItems", [])]
        held = [item for item in items if item is not None]
        # Admitted when moto takes it (a request queued behind others is not "in progress" yet), then held
        # for ``hold_s`` after moto applied it: the time a real transaction keeps its items.
        with self._backend_lock:
            with self._state:
                self._counts["transactions"] += 1
                self._item_writes.update(held)
                busy = [item is not None and bool(self._tx_held[item] or self._writing[item] or self._reading[item])
                        for item in items]
                if any(busy):
                    self._counts["transactions_cancelled"] += 1
                    return _cancelled(busy)
                self._tx_held.update(held)
            try:
                reply = self._backend.call(target, body, headers)
            except BaseException:
                self._release(self._tx_held, held)
                raise
        try:
            self._hold(self.hold_s)
        finally:
            self._release(self._tx_held, held)
        return reply

    def _transact_get(self, target: str, body: bytes, headers: dict[str, str], request: dict[str, Any]) -> Reply:
        items = [self._action_item(action, headers) for action in request.get("TransactItems", [])]
        with self._backend_lock:
            with self._state:
                self._counts["transact_gets"] += 1
                busy = [item is not None and bool(self._tx_held[item] or self._writing[item]) for item in items]
                if any(busy):
                    self._counts["transact_gets_cancelled"] += 1
                    return _cancelled(busy)
            return self._backend.call(target, body, headers)

    def _plain_write(self, target: str, body: bytes, headers: dict[str, str], request: dict[str, Any]) -> Reply:
        item = self._item(request.get("TableName"), request.get("Key") or request.get("Item"), headers)
        writing = [] if item is None else [item]
        with self._backend_lock:
            with self._state:
                self._counts["plain_writes"] += 1
                if item is not None:
                    self._item_writes[item] += 1
                    if self._tx_held[item]:
                        self._counts["plain_write_conflicts"] += 1
                        return _error(400, "TransactionConflictException", {"message": _CONFLICT_MESSAGE})
                self._writing.update(writing)
            try:
                reply = self._backend.call(target, body, headers)
            except BaseException:
                self._release(self._writing, writing)
                raise
        try:
            if self.write_hold_s:
                self._hold(self.write_hold_s)
        finally:
            self._release(self._writing, writing)
        return reply

    def _release(self, counter: Counter[str], items: list[str]) -> None:
        with self._state:
            counter.subtract(items)
            _drop_zeros(counter, items)

    def _batch_write(self, target: str, headers: dict[str, str], request: dict[str, Any]) -> Reply:
        self.resolve_tables(request, headers)  # before the locks: it may call the backend
        admitted: dict[str, list[Any]] = {}
        unprocessed: dict[str, list[Any]] = {}
        with self._backend_lock:  # a batch's writes are done when moto is: nothing to hold after
            with self._state:
                for table, entries in request.get("RequestItems", {}).items():
                    for entry in entries:
                        spec = entry.get("PutRequest", {}).get("Item") or entry.get("DeleteRequest", {}).get("Key")
                        item = self._item(table, spec, headers, locked=True)
                        self._counts["plain_writes"] += 1
                        if item is not None and self._tx_held[item]:
                            self._counts["plain_write_conflicts"] += 1
                            unprocessed.setdefault(table, []).append(entry)
                            continue
                        admitted.setdefault(table, []).append(entry)
                        if item is not None:
                            self._item_writes[item] += 1
            if admitted:
                reply = self._backend.call(target, json.dumps(dict(request, RequestItems=admitted)).encode(), headers)
            else:
                reply = Reply(200, {"Content-Type": "application/x-amz-json-1.0"}, b'{"UnprocessedItems": {}}')
        if not unprocessed or reply.status != 200:
            return reply
        answer = json.loads(reply.body)
        for table, entries in unprocessed.items():
            answer.setdefault("UnprocessedItems", {}).setdefault(table, []).extend(entries)
        return Reply(200, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": _request_id()},
                     json.dumps(answer).encode())

    # --- helpers ------------------------------------------------------------------------------------

    def _forward(self, target: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        with self._backend_lock:
            return self._backend.call(target, body, headers)

    def _action_item(self, action: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
        for kind in ("Put", "Update", "Delete", "ConditionCheck", "Get"):
            spec = action.get(kind)
            if spec is not None:
                return self._item(spec.get("TableName"), spec.get("Key") or spec.get("Item"), headers)
        return None

    def _item(self, table: Any, attributes: Any, headers: Mapping[str, str], *, locked: bool = False) -> str | None:
        """``table|key`` naming one item, or None when the request is malformed (moto then answers it)."""
        if not isinstance(table, str) or not isinstance(attributes, dict):
            return None
        # Inside the state lock only what ``resolve_tables`` learnt before: never call the backend there.
        names = self._key_names.get(table) if locked else self._table_key_names(table, headers)
        if not names or any(name not in attributes for name in names):
            return None
        return table + "|" + json.dumps({name: attributes[name] for name in names}, sort_keys=True)

    def _table_key_names(self, table: str, headers: Mapping[str, str]) -> tuple[str, ...] | None:
        if table not in self._key_names:
            reply = self._forward(TARGET_PREFIX + "DescribeTable", json.dumps({"TableName": table}).encode(), headers)
            names = None
            if reply.status == 200:
                schema = json.loads(reply.body)["Table"]["KeySchema"]
                names = tuple(k["AttributeName"] for k in sorted(schema, key=lambda k: k["KeyType"] != "HASH"))
            if names is None:
                return None  # unknown table: not cached, it may be created later
            self._key_names[table] = names  # one assignment: safe without the state lock
        return self._key_names[table]

    def resolve_tables(self, request: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        """Learn the key schema of every table a BatchWriteItem names (outside the state lock)."""
        for table in request.get("RequestItems", {}):
            self._table_key_names(table, headers)


def _cancelled(busy: list[bool]) -> Reply:
    reasons = [{"Code": "TransactionConflict", "Message": _CONFLICT_MESSAGE} if b else {"Code": "None"} for b in busy]
    codes = ", ".join(r["Code"] for r in reasons)
    return _error(400, "TransactionCanceledException", {
        "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        "CancellationReasons": reasons,
    })


def _error(status: int, code: str, fields: Mapping[str, Any]) -> Reply:
    body = json.dumps({"__type": _ERROR_NAMESPACE + code, **fields}).encode()
    return Reply(status, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": _request_id()}, body)


def _request_id() -> str:
    return uuid.uuid4().hex.upper()


def _drop_zeros(counter: Counter[str], items: list[str]) -> None:
    for item in items:
        if counter[item] <= 0:
            del counter[item]


def _pass_headers(headers: Any) -> dict[str, str]:
    return {name: value for name, value in headers if name.lower() in _PASSED_HEADERS}


# --- the HTTP front ---------------------------------------------------------------------------------


class DynamoDBConflictServer:
    """``ConflictingDynamoDB`` on ``http://127.0.0.1:<port>``; start/stop or use as a context manager."""

    def __init__(self, core: ConflictingDynamoDB | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.core = core if core is not None else ConflictingDynamoDB()
        self._server = _Server((host, port), _Handler)
        self._server.core = self.core
        self._thread = threading.Thread(target=self._server.serve_forever, name="dynamodb-conflicts", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DynamoDBConflictServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def stats(self) -> ConflictStats:
        return self.core.stats()

    def client(self, **kwargs: Any) -> Any:
        """A boto3 DynamoDB client talking to this front."""
        import boto3
        from botocore.config import Config

        kwargs.setdefault("region_name", "us-east-1")
        kwargs.setdefault("config", Config(max_pool_connections=64))  # many writer threads share one client
        return boto3.client("dynamodb", endpoint_url=self.url, **kwargs)

    def __enter__(self) -> DynamoDBConflictServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a fleet of workers opens many connections at once
    core: ConflictingDynamoDB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        try:
            reply = self.server.core.handle(target, body, dict(self.headers.items()))
        except Exception as exc:  # noqa: BLE001 - a broken backend must answer, like a 500 from AWS
            reply = _error(500, "InternalServerError", {"message": f"{type(exc).__name__}: {exc}"})
        self._send(reply)

    def do_GET(self) -> None:  # noqa: N802
        if self.path != STATS_PATH:
            self._send(Reply(404, {"Content-Type": "text/plain"}, b"not found"))
            return
        body = json.dumps(self.server.core.stats().to_dict()).encode()
        self._send(Reply(200, {"Content-Type": "application/json"}, body))

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return


@contextmanager
def serve_dynamodb_conflicts(
    *, upstream: str | None = None, hold_s: float = 0.025, write_hold_s: float = 0.0,
    hold: Callable[[float], None] = time.sleep,
) -> Iterator[DynamoDBConflictServer]:
    """Run the front on an ephemeral loopback port for the duration of a ``with`` block."""
    backend = MotoUpstream(upstream) if upstream else InProcessMoto()
    core = ConflictingDynamoDB(backend, hold_s=hold_s, write_hold_s=write_hold_s, hold=hold)
    with DynamoDBConflictServer(core) as server:
        yield server


def fetch_stats(url: str) -> ConflictStats:
    """The counters of a front running in another process."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    try:
        conn.request("GET", STATS_PATH)
        return ConflictStats.from_dict(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.doubles.dynamodb_conflicts", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", help="a moto server's URL; default: moto's DynamoDB in this process")
    parser.add_argument("--hold-ms", type=float, default=25.0, help="how long a transaction holds its items")
    parser.add_argument("--write-hold-ms", type=float, default=0.0, help="how long a plain write holds its item")
    args = parser.parse_args(argv)
    backend = MotoUpstream(args.upstream) if args.upstream else InProcessMoto()
    core = ConflictingDynamoDB(backend, hold_s=args.hold_ms / 1000, write_hold_s=args.write_hold_ms / 1000)
    server = DynamoDBConflictServer(core, host=args.host, port=args.port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"endpoint {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()
    print(json.dumps(core.stats().to_dict()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

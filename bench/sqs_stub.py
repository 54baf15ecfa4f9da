"""A tiny SQS endpoint for the producer benchmark: enough of the JSON protocol (``X-Amz-Target:
AmazonSQS.SendMessage`` / ``SendMessageBatch``) for boto3, with injected latency per call. moto is too
slow to measure a producer against. Runs as its own process: ``python -m bench.sqs_stub --port P``."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["serve"]


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = {"SendMessage": 0, "SendMessageBatch": 0}
        self.messages = 0
        self.max_in_flight = 0
        self.in_flight = 0


def _handler(latency_s: float, counters: _Counters) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - /stats for the benchmark, not SQS
            with counters.lock:
                body = json.dumps(
                    {
                        "calls": counters.calls,
                        "messages": counters.messages,
                        "max_in_flight": counters.max_in_flight,
                    }
                ).encode()
            self._reply(200, body, "application/json")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            with counters.lock:
                counters.in_flight += 1
                counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
            try:
                time.sleep(latency_s)
                if action == "SendMessageBatch":
                    entries = request.get("Entries", [])
                    result = {
                        "Successful": [
                            {
                                "Id": e["Id"],
                                "MessageId": str(uuid.uuid4()),
                                "MD5OfMessageBody": _md5(e["MessageBody"]),
                            }
                            for e in entries
                        ],
                        "Failed": [],
                    }
                    sent = len(entries)
                elif action == "SendMessage":
                    result = {
                        "MessageId": str(uuid.uuid4()),
                        "MD5OfMessageBody": _md5(request["MessageBody"]),
                    }
                    sent = 1
                else:
                    self._reply(
                        400,
                        json.dumps(
                            {"__type": "com.amazonaws.sqs#UnsupportedOperation", "message": action}
                        ).encode(),
                        "application/x-amz-json-1.0",
                    )
                    return
                with counters.lock:
                    counters.calls[action] += 1
                    counters.messages += sent
            finally:
                with counters.lock:
                    counters.in_flight -= 1
            self._reply(200, json.dumps(result).encode(), "application/x-amz-json-1.0")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-RequestId", "bench")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _md5(body: str) -> str:
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()


def serve(port: int, latency_s: float) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(latency_s, _Counters()))
    server.daemon_threads = True
    server.request_queue_size = 256
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    options = parser.parse_args()
    serve(options.port, options.latency_ms / 1000)

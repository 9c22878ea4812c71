"""A real HTTP receiver on loopback that records what it is sent (for notification tests)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    url: str
    status: int = 204  # what the receiver answers; set to 500 to make deliveries fail
    delay: float = 0.0  # seconds before answering
    delayed: str = ""  # if set, only notifications of this subscription id are delayed
    reply: bytes = b""  # the JSON body of the answer
    items: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[Any]:
        with self.lock:
            return [body for _, body in self.items]

    def wait(self, count: int, timeout: float = 5.0) -> list[Any]:
        """The bodies received, once there are at least `count` (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.bodies()) < count:
            time.sleep(0.02)
        return self.bodies()


@contextmanager
def receiver(path: str = "/notify", port: int = 0) -> Iterator[Received]:
    holder: dict[str, Received] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received = holder["r"]
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"null")
            if not received.delayed or _subscription(body) == received.delayed:
                time.sleep(received.delay)
            with received.lock:
                received.items.append((dict(self.headers), body))
            self.send_response(received.status)
            self.send_header("Content-Length", str(len(received.reply)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(received.reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    holder["r"] = Received(f"http://127.0.0.1:{server.server_port}{path}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["r"]
    finally:
        server.shutdown()
        server.server_close()


def _subscription(body: Any) -> Any:
    return body.get("subscriptionId") if isinstance(body, dict) else None

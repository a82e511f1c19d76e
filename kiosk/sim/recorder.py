"""A second, unrelated HTTP server that records what it receives: "another host" for tests
of redirects. A gateway (or a proxy in front of it) that answers 30x with a Location on
another host must not receive the kiosk's X-API-Key or Authorization there.

    with HeaderRecorder() as other:
        sim.knobs.gateway_redirect = other.url("localhost") + "/api/voice/realtime-session"
        ...  # press
        assert all("x-api-key" not in r.headers for r in other.requests)
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as it arrived. Header names are in lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HeaderRecorder:
    """Records every request; answers each with `status` and the JSON `answer`."""

    def __init__(self, status: int = 404, answer: Any = None, *,
                 host: str = "127.0.0.1") -> None:
        self.status = status
        self.answer = {"detail": "Not Found"} if answer is None else answer
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self._server.recorder = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=lambda: self._server.serve_forever(0.05),
                                        name="header-recorder", daemon=True)

    def start(self) -> HeaderRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)

    def __enter__(self) -> HeaderRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, host: str = "127.0.0.1") -> str:
        """Its base URL; name it by "localhost" to make it another host than 127.0.0.1."""
        return f"http://{host}:{self._server.server_address[1]}"

    def wait_for_request(self, timeout_s: float = 5.0) -> Received:
        """The first request, once it has arrived."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not self.requests:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no request reached the recorder in {timeout_s:g} s")
                self._changed.wait(remaining)
            return self.requests[0]

    def add(self, received: Received) -> None:
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _any(self) -> None:
        recorder: HeaderRecorder = self.server.recorder  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorder.add(Received(self.command, self.path,
                              {k.lower(): v for k, v in self.headers.items()}, body))
        data = json.dumps(recorder.answer).encode()
        self.send_response(recorder.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815

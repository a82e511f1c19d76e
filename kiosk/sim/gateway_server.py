"""The simulated VoiceAssist gateway: login, refresh with rotation, API keys, and
POST /api/voice/realtime-session in both response forms, with fault knobs."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from kiosk.sim.records import GatewayRequest

if TYPE_CHECKING:
    from kiosk.sim.simulator import Simulator

VOICE_CONFIG: dict[str, Any] = {
    "voice": "alloy",
    "modalities": ["text", "audio"],
    "input_audio_format": "pcm16",
    "output_audio_format": "pcm16",
    "input_audio_transcription": {"model": "whisper-1"},
    "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                       "silence_duration_ms": 500},
}


class Accounts:
    """Users, API keys and the tokens the gateway handed out (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: dict[str, tuple[str, bool]] = {}  # email -> (password, requires_2fa)
        self.api_keys: set[str] = set()
        self.access: dict[str, float] = {}  # access token -> expires (monotonic)
        self.refresh: dict[str, float] = {}  # live refresh token -> expires (monotonic)
        self.realtime_tokens: dict[str, float] = {}  # ephemeral token / key -> expires (unix)

    def issue_pair(self, access_ttl_s: float, refresh_ttl_s: float) -> dict[str, Any]:
        access, refresh = "eyJsim." + secrets.token_urlsafe(24), "rt_" + secrets.token_urlsafe(24)
        now = time.monotonic()
        with self.lock:
            self.access[access] = now + access_ttl_s
            self.refresh[refresh] = now + refresh_ttl_s
        return {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
                "expires_in": int(access_ttl_s) if access_ttl_s >= 1 else access_ttl_s,
                "refresh_expires_in": int(refresh_ttl_s), "role": "user"}

    def access_ok(self, token: str) -> bool:
        with self.lock:
            return self.access.get(token, 0.0) > time.monotonic()

    def take_refresh(self, token: str) -> bool:
        """Rotation: a refresh token works once, then it is revoked."""
        with self.lock:
            return self.refresh.pop(token, 0.0) > time.monotonic()

    def realtime_token_ok(self, token: str) -> bool:
        with self.lock:
            return self.realtime_tokens.get(token, 0.0) > time.time()


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sim: Simulator) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sim = sim
        self.served = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: GatewayServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # tests read the records; stderr noise helps nobody

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        record = GatewayRequest(self.path, {k.lower(): v for k, v in self.headers.items()},
                                body)
        knobs = sim.knobs
        if knobs.gateway_delay_s > 0:
            sim.stopping.wait(knobs.gateway_delay_s)
        if body is None or not isinstance(body, dict):
            self._reply(record, 422, {"detail": "body must be a JSON object"})
        elif self.path == "/api/auth/login":
            self._login(record, body)
        elif self.path == "/api/auth/refresh":
            self._refresh(record, body)
        elif self.path == "/api/voice/realtime-session":
            self._session(record, body)
        else:
            self._reply(record, 404, {"detail": "Not Found"})

    def _login(self, record: GatewayRequest, body: dict[str, Any]) -> None:
        acc = self.server.sim.accounts
        with acc.lock:
            user = acc.users.get(str(body.get("email")))
        if user is None or user[0] != body.get("password"):
            self._reply(record, 401, {"detail": "Incorrect email or password"})
        elif user[1]:
            self._reply(record, 200, {"requires_2fa": True, "user_id": str(uuid.uuid4()),
                                      "message": "Two-factor authentication required"})
        else:
            k = self.server.sim.knobs
            self._reply(record, 200, acc.issue_pair(k.access_ttl_s, k.refresh_ttl_s))

    def _refresh(self, record: GatewayRequest, body: dict[str, Any]) -> None:
        acc = self.server.sim.accounts
        if not acc.take_refresh(str(body.get("refresh_token"))):
            self._reply(record, 401, {"detail": "Invalid or expired refresh token"})
            return
        k = self.server.sim.knobs
        self._reply(record, 200, acc.issue_pair(k.access_ttl_s, k.refresh_ttl_s))

    def _authorised(self) -> bool:
        acc = self.server.sim.accounts
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return acc.access_ok(auth[7:].strip())  # a JWT wins over an API key
        with acc.lock:
            return self.headers.get("X-API-Key", "") in acc.api_keys

    def _session(self, record: GatewayRequest, body: dict[str, Any]) -> None:
        sim = self.server.sim
        k = sim.knobs
        if k.gateway_status is not None:
            status = k.gateway_status
            if k.gateway_fail_count is not None:
                k.gateway_fail_count -= 1
                if k.gateway_fail_count <= 0:
                    k.gateway_status, k.gateway_fail_count = None, None
            detail = {401: "Not authenticated", 403: "Forbidden", 429: "Too many requests",
                      503: "Realtime API is not enabled or not configured"}.get(
                status, "Failed to create Realtime session: simulated failure")
            headers = {"Retry-After": f"{k.retry_after_s:g}"} if (
                status == 429 and k.retry_after_s is not None) else {}
            self._reply(record, status, {"detail": detail}, headers)
            return
        if not self._authorised():
            self._reply(record, 401, {"detail": "Not authenticated"})
            return
        if k.gateway_malformed == "not_json":
            self._reply(record, 200, b"<html>proxy login</html>")
            return
        grant = sim.make_grant(body)
        if k.gateway_malformed == "missing_fields":
            grant = {"session_id": grant["session_id"]}
        self._reply(record, 200, grant)

    def _reply(self, record: GatewayRequest, status: int, payload: Any,
               headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        record.status = status
        self.server.sim.record_gateway(record)  # before answering: tests see it at once
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

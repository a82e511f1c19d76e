"""The simulated VoiceAssist gateway over HTTP (or HTTPS): login, refresh, API keys, and
POST /api/voice/realtime-session in both response forms, with the real gateway's answers
(protocol.md, section 1b) and the fault knobs of `SimKnobs`.

The order of checks follows the real one (FastAPI behind a rate limiter): redirect and rate
limit first, then a body that is not JSON (422), then authentication (401), then the body's
fields (422), then the session itself (cache, the upstream call, its timeouts and failures).
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from kiosk.sim import grants
from kiosk.sim.grants import VOICE_CONFIG
from kiosk.sim.records import GatewayRequest

if TYPE_CHECKING:
    from kiosk.sim.simulator import Simulator

__all__ = ["VOICE_CONFIG", "GatewayServer"]

SESSION_PATH = "/api/voice/realtime-session"
RATE_LIMITED = "Rate limit exceeded: {n} per 1 minute"
FORCED_DETAIL = {401: "Not authenticated", 403: "Not enough permissions",
                 503: "Realtime API is not enabled or not configured"}


class GatewayServer(ThreadingHTTPServer):
    """One thread per connection; with `tls`, the TLS handshake runs in that thread too, so a
    client that never finishes one cannot stall the others."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.sim = sim
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10.0)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client refused our certificate, or spoke plain HTTP
        try:
            wrapped.settimeout(None)
            self.RequestHandlerClass(wrapped, client_address, self)  # type: ignore[arg-type]
        finally:
            wrapped.close()


    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out, was stopped) is no error of the simulator's."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: GatewayServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection does not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # tests read the records; stderr noise helps nobody

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        sim = self.server.sim
        k = sim.knobs
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else {}
            json_problem = None
        except ValueError as exc:
            body, json_problem = None, str(exc).split(":")[0]
        record = GatewayRequest(self.path, {k.lower(): v for k, v in self.headers.items()},
                                body)
        if k.gateway_delay_s > 0:
            sim.stopping.wait(k.gateway_delay_s)
        route = {"/api/auth/login": self._login, "/api/auth/refresh": self._refresh,
                 SESSION_PATH: self._session}.get(self.path)
        if route is None:
            self._reply(record, 404, {"detail": "Not Found"})
        elif self._refused_early(record):
            return
        elif json_problem is not None:
            self._reply(record, 422, grants.json_error(json_problem))
        elif self.path == SESSION_PATH and not self._authorised(record):
            return
        else:
            clean, errors = grants.validate(self.path, body)
            if clean is None:
                self._reply(record, 422, {"detail": errors})
            else:
                route(record, clean)

    def _refused_early(self, record: GatewayRequest) -> bool:
        """Redirects, forced statuses and rate limits: answered before anything is read."""
        sim = self.server.sim
        k = sim.knobs
        ip = self.client_address[0]
        if self.path == SESSION_PATH and k.gateway_redirect:
            self._reply(record, k.gateway_redirect_status, b"",
                        {"Location": k.gateway_redirect})
            return True
        if self.path == SESSION_PATH and k.gateway_status is not None:
            status = k.gateway_status
            sim.use_failure()
            if status == 429:
                self._reply(record, 429, {"error": RATE_LIMITED.format(n=10)},
                            {} if k.retry_after_s is None
                            else {"Retry-After": f"{k.retry_after_s:g}"})
            else:
                self._reply(record, status, {"detail": FORCED_DETAIL.get(
                    status, "Failed to create Realtime session: simulated failure")})
            return True
        limit = {"/api/auth/login": k.login_per_minute,
                 "/api/auth/refresh": k.refresh_per_minute}.get(self.path)
        if limit is not None and sim.accounts.rate_limited(f"{self.path} {ip}", limit):
            self._reply(record, 429, {"error": RATE_LIMITED.format(n=limit)})
            return True
        return False

    def _authorised(self, record: GatewayRequest) -> bool:
        """The real gateway's checks and 401 bodies. A bearer JWT wins over an API key."""
        sim = self.server.sim
        acc = sim.accounts
        auth = self.headers.get("Authorization", "")
        key = self.headers.get("X-API-Key")
        if auth.lower().startswith("bearer "):
            sim.stopping.wait(sim.knobs.bearer_check_s)
            if acc.access_ok(auth[7:].strip()):
                return True
            detail = "Could not validate credentials"
        elif key is not None:
            sim.stopping.wait(sim.knobs.api_key_check_s)  # bcrypt, once per request
            with acc.lock:
                if key in acc.api_keys:
                    return True
            detail = "Invalid API key"
        else:
            detail = "Not authenticated"
        self._reply(record, 401, {"detail": detail}, {"WWW-Authenticate": "Bearer"})
        return False

    def _login(self, record: GatewayRequest, body: dict[str, Any]) -> None:
        sim = self.server.sim
        with sim.accounts.lock:
            user = sim.accounts.users.get(body["email"])
        if user is None or user[0] != body["password"]:
            self._reply(record, 401, {"detail": "Incorrect email or password"})
        elif user[1]:
            self._reply(record, 200, {"requires_2fa": True, "user_id": "usr_sim",
                                      "message": "Two-factor authentication required"})
        else:
            k = sim.knobs
            self._reply(record, 200, sim.accounts.issue_pair(k.access_ttl_s, k.refresh_ttl_s))

    def _refresh(self, record: GatewayRequest, body: dict[str, Any]) -> None:
        sim = self.server.sim
        k = sim.knobs
        if not sim.accounts.use_refresh(body["refresh_token"], strict=k.refresh_rotation):
            self._reply(record, 401, {"detail": "Invalid or expired refresh token"})
            return
        self._reply(record, 200, sim.accounts.issue_pair(k.access_ttl_s, k.refresh_ttl_s))

    def _session(self, record: GatewayRequest, body: dict[str, Any]) -> None:
        sim = self.server.sim
        k = sim.knobs
        if k.gateway_malformed == "not_json":
            self._reply(record, 200, b"<html>proxy login</html>")
            return
        status, answer = sim.grant_for(body)
        if status == 200 and k.gateway_malformed == "missing_fields":
            answer = {"session_id": answer["session_id"]}
        self._reply(record, status, answer)

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


def served_forever(server: GatewayServer) -> threading.Thread:
    """Run `server` in a daemon thread."""
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05),
                              name="sim-gateway", daemon=True)
    thread.start()
    return thread

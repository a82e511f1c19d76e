"""The loopback simulator: a fake VoiceAssist gateway (HTTP) and a fake realtime service
(WebSocket) on 127.0.0.1, for tests, the demo, and `voice-kiosk run` with no gateway.url.

    with Simulator() as sim:
        key = sim.create_api_key()
        ...  # point GatewaySettings(url=sim.gateway_url, api_key_file=...) at it
        sim.wait_for(lambda: sim.connections and sim.connections[-1].truncations, 5)
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from websockets.sync.server import Server, ServerConnection, serve

from kiosk.sim.gateway_server import VOICE_CONFIG, Accounts, GatewayServer
from kiosk.sim.realtime_server import RealtimeSession
from kiosk.sim.records import GatewayRequest, RealtimeConnection, SimKnobs
from kiosk.sim.responder import new_id

# websockets logs every frame at debug level, answer text included: keep it to warnings.
_WS_LOG = logging.getLogger("kiosk.sim.websockets")
_WS_LOG.setLevel(logging.WARNING)

INJECTABLE = ("error", "oversized", "bad_json", "bad_base64", "odd_bytes", "binary",
              "unknown_event", "drop")


class Simulator:
    """Gateway + realtime service on loopback ports. Every knob of `SimKnobs` can be passed as
    a keyword here and changed later through `sim.knobs`."""

    def __init__(self, *, model: str = "gpt-realtime", **knobs: Any) -> None:
        self.model = model
        self.knobs = SimKnobs(**knobs)
        self.accounts = Accounts()
        self.gateway_requests: list[GatewayRequest] = []
        self.connections: list[RealtimeConnection] = []
        self.stopping = threading.Event()
        self._changed = threading.Condition()
        self._sessions: list[RealtimeSession] = []
        self._http: GatewayServer | None = None
        self._ws: Server | None = None
        self._threads: list[threading.Thread] = []
        self.api_key = ""  # a ready-made X-API-Key, created by start()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Simulator:
        self._http = GatewayServer(self)
        # The kiosk sends small appends; answers are bounded by knobs. 16 MiB like the service.
        self._ws = serve(self._serve_ws, "127.0.0.1", 0, max_size=16 * 1024 * 1024,
                         compression=None, ping_interval=20, ping_timeout=20,
                         close_timeout=1, logger=_WS_LOG)
        http = self._http
        for target, name in ((lambda: http.serve_forever(poll_interval=0.05), "sim-gateway"),
                             (self._ws.serve_forever, "sim-realtime")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.api_key = self.create_api_key()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for session in list(self._sessions):
            session.close(1001, "simulator stopping")
        if self._ws is not None:
            self._ws.shutdown()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for thread in self._threads:
            thread.join(2.0)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def gateway_url(self) -> str:
        assert self._http is not None, "start() the simulator first"
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def realtime_url(self) -> str:
        assert self._ws is not None, "start() the simulator first"
        return f"ws://127.0.0.1:{self._ws.socket.getsockname()[1]}/v1/realtime"

    # -- credentials -------------------------------------------------------------------------

    def create_api_key(self) -> str:
        """A new X-API-Key the gateway accepts."""
        key = "va_k_" + secrets.token_urlsafe(24)
        with self.accounts.lock:
            self.accounts.api_keys.add(key)
        return key

    def revoke_api_key(self, key: str) -> None:
        with self.accounts.lock:
            self.accounts.api_keys.discard(key)

    def create_user(self, email: str = "kiosk@ward.example", password: str | None = None, *,
                    requires_2fa: bool = False) -> tuple[str, str]:
        """A login the gateway accepts; returns (email, password)."""
        password = password or secrets.token_urlsafe(12)
        with self.accounts.lock:
            self.accounts.users[email] = (password, requires_2fa)
        return email, password

    def expire_tokens(self) -> None:
        """Every access and realtime token handed out so far stops working now."""
        with self.accounts.lock:
            self.accounts.access.clear()
            self.accounts.realtime_tokens.clear()

    def make_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        """A session grant in the form `knobs.response_form` (used by the gateway handler)."""
        k = self.knobs
        token = ("ek_" if k.response_form == "current" else "sk-sim-") + secrets.token_urlsafe(24)
        expires = time.time() + k.token_ttl_s
        with self.accounts.lock:
            self.accounts.realtime_tokens[token] = expires
        config = dict(VOICE_CONFIG)
        if isinstance(body.get("voice"), str):
            config["voice"] = body["voice"]
        if isinstance(body.get("language"), str):
            config["language"] = body["language"]
        if isinstance(body.get("silence_duration_ms"), int):
            config["turn_detection"] = {**config["turn_detection"],
                                        "silence_duration_ms": body["silence_duration_ms"]}
        grant: dict[str, Any] = {
            "url": self.realtime_url, "model": self.model, "session_id": new_id("sess"),
            "expires_at": int(expires) if k.token_ttl_s >= 5 else expires,
            "conversation_id": body.get("conversation_id") or str(uuid.uuid4()),
            "voice_config": config}
        if k.response_form == "early":
            grant["api_key"] = token
        else:
            grant["auth"] = {"type": "ephemeral_token", "token": token, "expires_at": expires}
            grant["audio_enhancements"] = {"noise_suppression": False}
        return grant

    # -- records -----------------------------------------------------------------------------

    def record(self, change: Callable[[], None]) -> None:
        """Apply a change to the records and wake waiters (used by the servers)."""
        with self._changed:
            change()
            self._changed.notify_all()

    def record_gateway(self, request: GatewayRequest) -> None:
        self.record(lambda: self.gateway_requests.append(request))

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 5.0) -> Any:
        """Wait until predicate() is truthy (re-checked on every record change); returns its
        value, or raises TimeoutError naming the predicate."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"simulator: condition not met within {timeout_s:g} s")
                self._changed.wait(min(remaining, 0.1))

    @property
    def last_connection(self) -> RealtimeConnection | None:
        return self.connections[-1] if self.connections else None

    # -- faults on live connections ----------------------------------------------------------

    def inject(self, kind: str, *, code: str = "server_error", close_code: int | None = None,
               size_kib: int = 8192) -> int:
        """Send a fault to every open realtime connection; returns how many got it.

        kind: "error" (an error event with `code`, then close `close_code` if given),
        "oversized" (a valid-looking event of `size_kib`), "bad_json", "bad_base64",
        "odd_bytes" (audio deltas the client must drop), "binary", "unknown_event",
        "drop" (lose the TCP link without a close frame)."""
        if kind not in INJECTABLE:
            raise ValueError(f"unknown fault {kind!r}; one of {INJECTABLE}")
        sessions = [s for s in self._sessions if not s.closed]
        for s in sessions:
            if kind == "error":
                s.error(code, f"Simulated {code}.", kind="server_error"
                        if code == "server_error" else "invalid_request_error")
                if close_code is not None:
                    s.close(close_code, code)
            elif kind == "oversized":
                s.send_raw('{"type":"response.output_text.delta","delta":"'
                           + "x" * (size_kib * 1024) + '"}')
            elif kind == "bad_json":
                s.send_raw('{"type": "response.output_audio.delta", "delta": ')
            elif kind in ("bad_base64", "odd_bytes"):
                delta = "!!not base64!!" if kind == "bad_base64" else "AAAA"  # 3 bytes
                s.send({"type": "response.output_audio.delta", "response_id": "resp_junk",
                        "item_id": "item_junk", "output_index": 0, "content_index": 0,
                        "delta": delta})
            elif kind == "binary":
                s.send_raw(b"\x00\x01binary")
            elif kind == "unknown_event":
                s.send({"type": "future.event_kind", "detail": "from a newer server"})
            else:
                s.drop()
        return len(sessions)

    # -- websocket entry ---------------------------------------------------------------------

    def _serve_ws(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        with self._changed:
            record = RealtimeConnection(len(self.connections), request.path, headers)
            self.connections.append(record)
            self._changed.notify_all()
        session = RealtimeSession(self, ws, record)
        self._sessions.append(session)
        try:
            session.serve()
        finally:
            self._sessions.remove(session)
            self.record(lambda: None)

"""The loopback simulator: a fake VoiceAssist gateway (HTTP or HTTPS) and a fake realtime
service (WS or WSS), for tests and the demo.

    with Simulator() as sim:
        key = sim.create_api_key()
        ...  # point GatewaySettings(url=sim.gateway_url, api_key_file=...) at it
        sim.wait_for(lambda: sim.connections and sim.connections[-1].truncations, 5)

`kiosk.sim.remote.SimulatorProcess` runs the same thing in a child process with the same API,
for tests whose kiosk is a subprocess too.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.server import Server, ServerConnection, serve

from kiosk.sim import grants
from kiosk.sim.accounts import Accounts
from kiosk.sim.faults import INJECTABLE, inject_into
from kiosk.sim.gateway_server import GatewayServer, served_forever
from kiosk.sim.knobs import SimKnobs
from kiosk.sim.realtime_server import RealtimeSession
from kiosk.sim.records import (
    BoundedList,
    GatewayRequest,
    Limits,
    RealtimeConnection,
    wait_until,
)

__all__ = ["INJECTABLE", "Simulator", "TlsFiles"]

# websockets logs every frame at debug level, answer text included: keep it to warnings.
_WS_LOG = logging.getLogger("kiosk.sim.websockets")
_WS_LOG.setLevel(logging.WARNING)

TlsFiles = tuple[str | Path, str | Path]
"""(certificate chain file, private key file), both PEM."""


def server_tls(files: TlsFiles) -> ssl.SSLContext:
    """A server-side TLS context from a certificate chain and its key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(files[0]), str(files[1]))
    return ctx


class Simulator:
    """Gateway + realtime service on loopback ports.

    host, gateway_port, realtime_port: where to listen (127.0.0.1 and free ports by default).
    tls: (certificate, key) files: serve https:// and wss:// instead of http:// and ws://.
    limits: how much it remembers (see `records.Limits`).
    Every knob of `SimKnobs` can be passed as a keyword and changed later through `sim.knobs`.
    """

    def __init__(self, *, host: str = "127.0.0.1", gateway_port: int = 0,
                 realtime_port: int = 0, tls: TlsFiles | None = None,
                 limits: Limits | None = None, **knobs: Any) -> None:
        self.host, self._ports = host, (gateway_port, realtime_port)
        self._tls = server_tls(tls) if tls is not None else None
        self.limits = limits or Limits()
        self.knobs = SimKnobs(**knobs)
        self.accounts = Accounts()
        self.gateway_requests: BoundedList[GatewayRequest] = BoundedList(
            self.limits.max_gateway_requests)
        self.connections: BoundedList[RealtimeConnection] = BoundedList(
            self.limits.max_connections)
        self.version = 0
        """Change counter: +1 on every change to the records."""
        self.stopping = threading.Event()
        self._changed = threading.Condition()
        self._sessions: list[RealtimeSession] = []
        self._http: GatewayServer | None = None
        self._ws: Server | None = None
        self._threads: list[threading.Thread] = []
        self._fail_lock = threading.Lock()
        self.api_key = ""  # a ready-made X-API-Key, created by start()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Simulator:
        self._http = GatewayServer(self, self.host, self._ports[0], self._tls)
        # The kiosk sends small appends; answers are bounded by knobs. 16 MiB like the service.
        self._ws = serve(self._serve_ws, self.host, self._ports[1], ssl=self._tls,
                         max_size=16 * 1024 * 1024, compression=None, ping_interval=20,
                         ping_timeout=20, close_timeout=1, logger=_WS_LOG)
        self._ports = (self._http.server_address[1], self._ws.socket.getsockname()[1])
        self._threads.append(served_forever(self._http))
        ws_thread = threading.Thread(target=self._ws.serve_forever, name="sim-realtime",
                                     daemon=True)
        ws_thread.start()
        self._threads.append(ws_thread)
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

    def _url_host(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)

    @property
    def gateway_url(self) -> str:
        assert self._http is not None, "start() the simulator first"
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._url_host()}:{self._ports[0]}"

    @property
    def realtime_url(self) -> str:
        """The simulator's own realtime endpoint (grants name `knobs.realtime_url` if set)."""
        assert self._ws is not None, "start() the simulator first"
        scheme = "wss" if self._tls else "ws"
        return f"{scheme}://{self._url_host()}:{self._ports[1]}/v1/realtime"

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
        """Every access and realtime token handed out so far stops working now (and the
        gateway's token cache is emptied, so the next grant carries a fresh token)."""
        self.accounts.expire_tokens()

    def restart_gateway(self) -> None:
        """What a gateway restart changes for a kiosk: the token cache, rate-limit windows and
        adaptive-VAD state are forgotten (the next adaptive grant gets a 200 ms silence)."""
        self.accounts.restart()

    # -- session grants (called by the gateway handler) --------------------------------------

    def grant_for(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, answer) for an authorised, validated session request."""
        k, acc = self.knobs, self.accounts
        voice = grants.select_voice(body.get("voice"), k.gateway_default_voice)
        config = grants.voice_config(body, voice, acc.next_session_number())
        early = k.response_form == "early"
        if early:  # the gateway's own service key: no upstream call
            token, expires = acc.service_key(k.token_ttl_s)
            cached = True
        else:
            token, expires, cached = acc.ephemeral_token(k.gateway_model, voice, k.token_ttl_s,
                                                         share=k.token_cache)
        if not cached:
            failure = self._upstream_failure()
            if failure is not None:
                acc.forget_token(token)
                return failure
            if k.token_cache:
                acc.cache_token(k.gateway_model, voice, token)
        expires_at = int(expires) if k.token_ttl_s >= 5 else expires
        return 200, grants.session_grant(url=k.realtime_url or self.realtime_url,
                                         model=k.gateway_model, token=token,
                                         expires_at=expires_at, early=early, body=body,
                                         config=config)

    def _upstream_failure(self) -> tuple[int, dict[str, Any]] | None:
        """The upstream (speech service) call: slow, timed out, or failed, per the knobs."""
        k = self.knobs
        if k.upstream_delay_s > k.upstream_timeout_s:
            self.stopping.wait(k.upstream_timeout_s)
            return 503, {"detail": "OpenAI session creation timed out"}
        if k.upstream_delay_s > 0:
            self.stopping.wait(k.upstream_delay_s)
        fault = k.upstream_fault
        if fault is None:
            return None
        self.use_failure()
        if fault == "failed":  # the real gateway wraps its own message once more
            return 503, {"detail": "Failed to create OpenAI session: Failed to create OpenAI "
                                   "session: 500"}
        return 500, {"detail": "Failed to create Realtime session: simulated upstream error"}

    def use_failure(self) -> None:
        """Count one forced failure against `gateway_fail_count`; clear the faults when it is
        used up."""
        k = self.knobs
        with self._fail_lock:
            if k.gateway_fail_count is None:
                return
            k.gateway_fail_count -= 1
            if k.gateway_fail_count <= 0:
                k.gateway_status = k.upstream_fault = k.gateway_fail_count = None

    # -- records -----------------------------------------------------------------------------

    def record(self, change: Callable[[], None],
               connection: RealtimeConnection | None = None) -> None:
        """Apply a change to the records and wake waiters (used by the servers)."""
        with self._changed:
            change()
            self.version += 1
            if connection is not None:
                connection.version = self.version
            self._changed.notify_all()

    def record_gateway(self, request: GatewayRequest) -> None:
        self.record(lambda: self.gateway_requests.append(request))

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 5.0) -> Any:
        """Wait until predicate() is truthy (re-checked on every record change); returns its
        value, or raises TimeoutError."""
        with self._changed:
            return wait_until(predicate, timeout_s,
                              lambda remaining: self._changed.wait(min(remaining, 0.1)))

    def wait_change(self, since: int, timeout_s: float) -> int:
        """Block until the records change after version `since` (or timeout); the version."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.version <= since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self.version

    @property
    def lock(self) -> threading.Condition:
        """Held while records change: hold it to read several records consistently."""
        return self._changed

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
        sessions = [s for s in self._sessions if not s.closed]
        return inject_into(sessions, kind, code=code, close_code=close_code, size_kib=size_kib)

    # -- websocket entry ---------------------------------------------------------------------

    def _serve_ws(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        with self._changed:
            index = self.connections.total
            record = RealtimeConnection.create(index, request.path, headers, self.limits)
            self.connections.append(record)
            self.version += 1
            record.version = self.version
            self._changed.notify_all()
        session = RealtimeSession(self, ws, record)
        self._sessions.append(session)
        try:
            session.serve()
        finally:
            self._sessions.remove(session)
            self.record(lambda: None, record)

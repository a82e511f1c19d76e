"""One *link*: a WebSocket to the realtime service (OpenAI Realtime GA, or compatible) for one
grant, on the conversation's asyncio loop (the `websockets` library does the protocol).

`Link.open()` connects with the grant's bearer token, waits for session.created, sends the GA
session.update and waits for session.updated. Then `recv()` hands out parsed events (beta
names translated to GA) until the link ends, when it raises `LinkClosed`. Malformed messages
and unknown events are logged and skipped, never fatal.

What the transport guarantees here:
- one TLS context for the gateway and this link (`gateway.ca_file`, `gateway.verify_tls`);
- `realtime.max_message_kib` enforced by websockets *before* a message is buffered (a bigger
  one closes the link with 1009; the visit reopens it);
- a half-open link (the network drops packets, the server stops reading) is declared dead
  within `realtime.link_timeout_s`: pings that get no pong abort the socket, even when a send
  is stuck behind a full buffer;
- no redirects (they would carry the bearer token elsewhere), no site proxy for loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import urllib.parse
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from kiosk import __version__
from kiosk.session import protocol as p
from kiosk.session.errors import GatewayError
from kiosk.session.gateway import Grant
from kiosk.session.transport import check_url, is_loopback
from kiosk.settings import GatewaySettings, RealtimeSettings

log = logging.getLogger("kiosk.session.link")
# websockets logs every frame and the handshake's headers at debug level: the bearer token,
# the patient's audio and the transcripts. Its own logger stays at warnings, whatever
# logging.level says.
_WS_LOG = logging.getLogger("kiosk.session.websockets")
_WS_LOG.setLevel(logging.WARNING)

MAX_VIOLATION_LOGS = 10  # per link; a flood of junk should not flood the journal
CLOSE_TIMEOUT_S = 1.0


class LinkError(Exception):
    """Opening or configuring a link failed. kind: network, auth, protocol, config."""

    def __init__(self, kind: str, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.close_code = close_code


class LinkClosed(Exception):
    """The link ended: by the server (its close code and reason), by the network, or by us."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class _NoRedirects(connect):
    """websockets follows redirects with the same headers; the bearer token must not."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


def realtime_url(base: str, model: str) -> str:
    """`base` with `?model=` set to `model` (replacing one the gateway may already have put
    there, keeping any other query parameters)."""
    parts = urllib.parse.urlsplit(base)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "model"]
    query.append(("model", model))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class Link:
    """One WebSocket for one grant. Create, `await open()`, then `recv()`/`send()`; `abort()`
    or `await close()` when done. Only ever used on one asyncio loop."""

    def __init__(self, grant: Grant, realtime: RealtimeSettings, gateway: GatewaySettings,
                 ctx: ssl.SSLContext | None, language: str | None = None) -> None:
        self.grant = grant
        self.settings = realtime
        self.language = language  # kiosk.language: transcription and "answer in ..."
        self.gateway = gateway
        self._ctx = ctx
        self._ws: ClientConnection | None = None
        self._liveness: asyncio.Task[None] | None = None
        self._dead_reason: str | None = None
        self._closing = False
        self.session: dict[str, Any] = {}
        self.dropped_messages = 0
        self.events_sent = 0
        self.audio_bytes_sent = 0

    # -- opening ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and configure within `realtime.connect_timeout_s`; raises LinkError."""
        timeout_s = self.settings.connect_timeout_s
        deadline = time.monotonic() + timeout_s
        base = self.settings.url or self.grant.url
        setting = "realtime.url" if self.settings.url else "the realtime url of the grant"
        try:
            check_url(base, setting, self.gateway)
        except GatewayError as exc:
            raise LinkError("config", exc.message) from None
        url = realtime_url(base, self.grant.model)
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "wss"
        try:
            self._ws = await _NoRedirects(
                url, additional_headers={"Authorization": f"Bearer {self.grant.token}"},
                user_agent_header=f"voice-kiosk/{__version__}", compression=None,
                proxy=None if is_loopback(parts.hostname) else True,
                ssl=self._ctx if secure else None, open_timeout=timeout_s,
                ping_interval=None, ping_timeout=None, close_timeout=CLOSE_TIMEOUT_S,
                max_size=self.settings.max_message_kib * 1024, max_queue=64, logger=_WS_LOG)
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code in (401, 403):
                raise LinkError("auth", f"realtime service refused the session token ({code}); "
                                        "the gateway's grant was not accepted") from None
            raise LinkError("network", f"realtime service answered HTTP {code} to the "
                                       "WebSocket upgrade; check the realtime URL") from None
        except ssl.SSLCertVerificationError as exc:
            raise LinkError("network", f"TLS certificate of the realtime service "
                                       f"{parts.hostname} not trusted ({exc.verify_message}); "
                                       "install the hospital CA as gateway.ca_file") from None
        except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
            raise LinkError("network", f"cannot connect to the realtime service "
                                       f"{parts.scheme}://{parts.netloc} "
                                       f"({type(exc).__name__}: {exc})") from None
        try:
            self.session = await self._await("session.created", deadline)
            await self.send(p.session_update(self.grant.voice_config, self.settings,
                                             self.language))
            self.session = await self._await("session.updated", deadline, errors_end_wait=True)
        except BaseException:
            self.abort()
            raise
        self._liveness = asyncio.get_running_loop().create_task(self._keepalive())

    async def _await(self, wanted: str, deadline: float,
                     errors_end_wait: bool = False) -> dict[str, Any]:
        """Read events until `wanted` arrives; returns its session object."""
        pending_error: tuple[str, str] | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.abort()
                raise LinkError("network", f"realtime service sent no {wanted} within "
                                           f"{self.settings.connect_timeout_s:g} s")
            try:
                async with asyncio.timeout(remaining):
                    event = await self._next_event()
            except TimeoutError:
                continue
            except LinkClosed as closed:
                raise _close_error(closed.code, closed.reason, pending_error) from None
            kind = event["type"]
            if kind == wanted:
                session = event.get("session")
                return session if isinstance(session, dict) else {}
            if kind == "error":
                pending_error = p.error_summary(event)
                if errors_end_wait and p.ERROR_ACTIONS.get(pending_error[0], "warn") in (
                        "warn", "ignore"):
                    # The service keeps its previous config and stays usable.
                    log.warning("realtime service rejected part of the session config "
                                "(%s: %s); continuing with its defaults", *pending_error)
                    return {}

    # -- traffic ---------------------------------------------------------------------------

    async def recv(self) -> dict[str, Any]:
        """The next valid server event (GA type names); raises LinkClosed when the link ends."""
        return await self._next_event()

    async def _next_event(self) -> dict[str, Any]:
        ws = self._ws
        if ws is None:
            raise LinkClosed(None, "not open")
        while True:
            try:
                data = await ws.recv()
            except ConnectionClosed as exc:
                raise self._closed_info(exc) from None
            if isinstance(data, bytes):
                self._violation(f"binary frame of {len(data)} bytes")
                continue
            try:
                event = p.parse_message(data, self.settings.max_message_kib * 1024)
            except p.ProtocolViolation as exc:
                self._violation(str(exc))
                continue
            event["type"] = p.ga_type(event["type"])
            return event

    async def send(self, event: dict[str, Any]) -> bool:
        """Send one client event; False when the link is gone (never raises). May wait while
        the network is slow: call it from a task that is allowed to wait (the uplink)."""
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(p.dumps(event), text=True)  # UTF-8 JSON bytes in a text frame
        except (ConnectionClosed, OSError):
            return False
        self.events_sent += 1
        return True

    async def append_audio(self, pcm: bytes) -> bool:
        ok = await self.send(p.append_audio(pcm))
        if ok:
            self.audio_bytes_sent += len(pcm)
        return ok

    # -- ending ----------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the socket now (no close handshake); pending recv/send end at once."""
        self._closing = True
        if self._liveness is not None:
            self._liveness.cancel()
        ws = self._ws
        if ws is not None and ws.transport is not None:
            ws.transport.abort()

    async def close(self) -> None:
        """Close politely (bounded by the close timeout), then hard."""
        self._closing = True
        if self._liveness is not None:
            self._liveness.cancel()
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S + 0.5):
                await ws.close()
        self.abort()

    async def _keepalive(self) -> None:
        """Ping every half `link_timeout_s`; a ping unanswered for the other half (or stuck
        behind a full send buffer) means the network ate the link: abort the socket."""
        ws = self._ws
        assert ws is not None
        half = self.settings.link_timeout_s / 2
        while True:
            await asyncio.sleep(half)
            try:
                async with asyncio.timeout(half):
                    pong = await ws.ping()
                    await pong
            except TimeoutError:
                self._dead_reason = (f"no answer to pings for {self.settings.link_timeout_s:g} "
                                     "s (network down or half-open)")
                log.warning("realtime link: %s; closing it", self._dead_reason)
                if ws.transport is not None:
                    ws.transport.abort()
                return
            except ConnectionClosed:
                return

    def _closed_info(self, exc: ConnectionClosed) -> LinkClosed:
        if self._dead_reason:
            return LinkClosed(None, self._dead_reason)
        if exc.rcvd is not None:  # the server sent a close frame
            reason = exc.rcvd.reason[:200]
            if self._closing:
                reason = "closed by the kiosk"
            return LinkClosed(exc.rcvd.code, reason)
        if self._closing:
            return LinkClosed(p.CLOSE_NORMAL, "closed by the kiosk")
        if exc.sent is not None and exc.sent.code == 1009:
            return LinkClosed(1009, f"a message exceeded realtime.max_message_kib "
                                    f"({self.settings.max_message_kib} KiB)")
        return LinkClosed(None, "connection lost")

    def _violation(self, what: str) -> None:
        self.dropped_messages += 1
        if self.dropped_messages <= MAX_VIOLATION_LOGS:
            log.warning("dropped a bad message from the realtime service: %s", what)


def _close_error(code: int | None, reason: str, error: tuple[str, str] | None) -> LinkError:
    if code == p.CLOSE_BAD_REQUEST:
        kind, message = p.rejection_advice(code, error)
        return LinkError(kind, message, close_code=code)
    said = f" after error {error[0]}: {error[1]}" if error else ""
    meaning = p.CLOSE_MEANINGS.get(code or 0, f"closed with code {code}" if code else reason)
    kind = {p.CLOSE_AUTH: "auth", p.CLOSE_BAD_REQUEST: "protocol",
            p.CLOSE_SESSION_EXPIRED: "network"}.get(code or 0, "network")
    return LinkError(kind, f"realtime service {meaning}{said}", close_code=code)

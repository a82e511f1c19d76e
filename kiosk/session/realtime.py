"""WebSocket client of the realtime service (OpenAI Realtime GA, or compatible).

`RealtimeClient.connect()` opens the socket with the grant's bearer token, waits for
session.created, sends the GA session.update and waits for session.updated; then a reader
thread turns server events into typed calls on a `RealtimeHandler`. Sends are thread-safe.
Malformed, oversized or unknown messages are logged and dropped; they never end a session.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
import urllib.parse
from typing import Any

import websocket

from kiosk.session import protocol as p
from kiosk.session.gateway import SessionGrant
from kiosk.settings import RealtimeSettings

log = logging.getLogger("kiosk.session.realtime")

LINK_IDLE_TIMEOUT_S = 60.0  # the service pings every ~20 s: this much silence is a dead link
_MAX_VIOLATION_LOGS = 10  # per connection; a flood of junk should not flood the journal


class RealtimeError(Exception):
    """Connecting or configuring failed. kind: network, auth, protocol or session_expired."""

    def __init__(self, kind: str, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.close_code = close_code


class RealtimeHandler:
    """Typed callbacks, called from the client's reader thread. Override what you need; keep
    them quick (they hold up the next server event)."""

    def on_speech_started(self, item_id: str, audio_start_ms: int) -> None: ...

    def on_speech_stopped(self, item_id: str, audio_end_ms: int) -> None: ...

    def on_response_created(self, response_id: str) -> None: ...

    def on_audio_delta(self, response_id: str, item_id: str, pcm: bytes) -> None: ...

    def on_audio_done(self, response_id: str, item_id: str) -> None: ...

    def on_response_done(self, response_id: str, status: str) -> None: ...

    def on_transcript(self, role: str, item_id: str, text: str) -> None:
        """A finished transcript: role "user" (what the patient said) or "assistant"."""

    def on_error(self, code: str, message: str, action: str) -> None:
        """An `error` event; action from protocol.ERROR_ACTIONS (default "warn")."""

    def on_closed(self, code: int | None, reason: str) -> None:
        """The connection ended (called exactly once, also after close())."""


def realtime_url(base: str, model: str) -> str:
    """`base` with `?model=` set to `model` (replacing one the gateway may already have put
    there, keeping any other query parameters)."""
    parts = urllib.parse.urlsplit(base)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "model"]
    query.append(("model", model))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class RealtimeClient:
    """One WebSocket connection for one session grant."""

    def __init__(self, grant: SessionGrant, settings: RealtimeSettings,
                 handler: RealtimeHandler) -> None:
        self.grant = grant
        self.settings = settings
        self.handler = handler
        self._ws: websocket.WebSocket | None = None
        self._send_lock = threading.Lock()
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        self._max_bytes = settings.max_message_kib * 1024
        self.session: dict[str, Any] = {}
        self.dropped_messages = 0
        self.events_sent = 0
        self.audio_bytes_sent = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._closed.is_set() and not self._closing.is_set()

    @property
    def closed(self) -> threading.Event:
        """Set once the connection has ended for any reason."""
        return self._closed

    # -- connect -----------------------------------------------------------------------------

    def connect(self, timeout_s: float | None = None) -> None:
        """Open, wait for session.created, configure, wait for session.updated. Raises
        RealtimeError. On success the reader thread runs and events flow to the handler."""
        timeout_s = timeout_s or self.settings.connect_timeout_s
        deadline = time.monotonic() + timeout_s
        url = realtime_url(self.grant.url, self.grant.model)
        try:
            ws = websocket.create_connection(
                url, timeout=timeout_s, header=[f"Authorization: Bearer {self.grant.token}"],
                suppress_origin=True, enable_multithread=True)
        except websocket.WebSocketBadStatusException as exc:
            code = getattr(exc, "status_code", 0)
            if code in (401, 403):
                raise RealtimeError("auth", f"realtime service refused the session token "
                                            f"({code}); the gateway's grant was not accepted"
                                    ) from None
            raise RealtimeError("network", f"realtime service answered HTTP {code} to the "
                                           "WebSocket upgrade; check the realtime URL"
                                ) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise RealtimeError("network", f"cannot connect to the realtime service "
                                           f"{self.grant.url} ({type(exc).__name__}: {exc})"
                                ) from None
        self._ws = ws
        if self._closing.is_set():  # close() was called while we were connecting
            self._shutdown_socket()
            raise RealtimeError("network", "connection closed by the kiosk while connecting")
        try:
            self.session = self._await("session.created", deadline)
            self.send(p.session_update(self.grant.voice_config, self.settings))
            self.session = self._await("session.updated", deadline, errors_end_wait=True)
        except BaseException:
            self._shutdown_socket()
            self._closed.set()
            raise
        ws.settimeout(LINK_IDLE_TIMEOUT_S)
        self._reader = threading.Thread(target=self._read_loop, name="realtime-reader",
                                        daemon=True)
        self._reader.start()

    def _await(self, wanted: str, deadline: float, errors_end_wait: bool = False
               ) -> dict[str, Any]:
        """Read events until `wanted` arrives; returns its session object."""
        assert self._ws is not None
        pending_error: tuple[str, str] | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RealtimeError("network", f"realtime service sent no {wanted} within "
                                               f"{self.settings.connect_timeout_s:g} s")
            self._ws.settimeout(remaining)
            try:
                opcode, frame = self._ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException) as exc:
                raise RealtimeError("network", f"realtime connection lost while waiting for "
                                               f"{wanted} ({type(exc).__name__})") from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code, reason = _close_info(frame.data)
                raise _close_error(code, reason, pending_error)
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            event = self._parse(frame.data)
            if event is None:
                continue
            kind = p.ga_type(event["type"])
            if kind == wanted:
                session = event.get("session")
                return session if isinstance(session, dict) else {}
            if kind == "error":
                code, message = p.error_summary(event)
                pending_error = (code, message)
                if errors_end_wait and p.ERROR_ACTIONS.get(code, "warn") in ("warn", "ignore"):
                    # The service keeps its previous config and stays usable.
                    log.warning("realtime service rejected part of the session config "
                                "(%s: %s); continuing with its defaults", code, message)
                    return {}

    # -- sending -----------------------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> bool:
        """Send one client event; False when the connection is gone (never raises)."""
        ws = self._ws
        if ws is None or self._closed.is_set():
            return False
        data = p.dumps(event)
        try:
            with self._send_lock:
                ws.send(data, websocket.ABNF.OPCODE_TEXT)  # UTF-8 JSON bytes, a text frame
        except (OSError, websocket.WebSocketException, AttributeError) as exc:
            if not self._closing.is_set():
                log.debug("send failed: %s", type(exc).__name__)
                self._shutdown_socket()
            return False
        self.events_sent += 1
        return True

    def append_audio(self, pcm: bytes) -> bool:
        ok = self.send(p.append_audio(pcm))
        if ok:
            self.audio_bytes_sent += len(pcm)
        return ok

    def truncate(self, item_id: str, audio_end_ms: int) -> bool:
        return self.send(p.truncate(item_id, audio_end_ms))

    def cancel_response(self, response_id: str | None = None) -> bool:
        return self.send(p.response_cancel(response_id))

    # -- closing -----------------------------------------------------------------------------

    def close(self, timeout_s: float = 0.5) -> None:
        """Close politely (close frame, brief wait for the echo), then hard. Idempotent."""
        if self._closing.is_set():
            self._closed.wait(timeout_s)
            self._shutdown_socket()  # a connect that finished after the first close()
            return
        self._closing.set()
        ws = self._ws
        if ws is not None and self._send_lock.acquire(timeout=min(0.2, timeout_s)):
            try:
                ws.send_close(p.CLOSE_NORMAL)
            except (OSError, websocket.WebSocketException, AttributeError):
                pass
            finally:
                self._send_lock.release()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout_s)
        self._shutdown_socket()
        if self._reader is None and not self._closed.is_set():
            self._closed.set()
            self._notify_closed(p.CLOSE_NORMAL, "closed by the kiosk")

    def _shutdown_socket(self) -> None:
        ws = self._ws
        sock = getattr(ws, "sock", None)
        if sock is not None:
            # shutdown() wakes a reader blocked in recv; close() alone does not on Linux.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if ws is not None:
            ws.shutdown()

    # -- reading -----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        code: int | None = None
        reason = "connection lost"
        while True:
            try:
                opcode, frame = ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                reason = f"no data from the realtime service for {LINK_IDLE_TIMEOUT_S:g} s"
                break
            except websocket.WebSocketPayloadException as exc:
                self._violation(f"undecodable frame ({exc})")
                continue
            except (OSError, websocket.WebSocketException, AttributeError, ValueError) as exc:
                if self._closing.is_set():
                    code, reason = p.CLOSE_NORMAL, "closed by the kiosk"
                else:
                    reason = f"connection lost ({type(exc).__name__})"
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code, reason = _close_info(frame.data)
                if self._closing.is_set():
                    reason = "closed by the kiosk"  # the server's echo of our close
                break
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self._violation(f"binary frame of {len(frame.data)} bytes")
                continue
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            event = self._parse(frame.data)
            if event is not None:
                self._dispatch(event)
        self._shutdown_socket()
        self._closed.set()
        self._notify_closed(code, reason)

    def _notify_closed(self, code: int | None, reason: str) -> None:
        try:
            self.handler.on_closed(code, reason)
        except Exception:
            log.exception("realtime handler failed on close")

    def _parse(self, data: bytes | str) -> dict[str, Any] | None:
        if len(data) > self._max_bytes:
            self._violation(f"message of {len(data) // 1024} KiB exceeds "
                            f"realtime.max_message_kib ({self.settings.max_message_kib})")
            return None
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            return p.parse_message(text, self._max_bytes)
        except UnicodeDecodeError:
            self._violation("message is not UTF-8")
        except p.ProtocolViolation as exc:
            self._violation(str(exc))
        return None

    def _violation(self, what: str) -> None:
        self.dropped_messages += 1
        if self.dropped_messages <= _MAX_VIOLATION_LOGS:
            log.warning("dropped a bad message from the realtime service: %s", what)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = p.ga_type(event["type"])
        method = _DISPATCH.get(kind)
        if method is None:
            return  # unknown or uninteresting event types are ignored by design
        try:
            method(self, event)
        except p.ProtocolViolation as exc:
            self._violation(f"{kind}: {exc}")
        except (KeyError, TypeError, ValueError) as exc:
            self._violation(f"{kind} with missing or bad fields ({type(exc).__name__}: {exc})")
        except Exception:
            log.exception("realtime handler failed on %s; event dropped", kind)

    def _on_speech_started(self, e: dict[str, Any]) -> None:
        self.handler.on_speech_started(str(e.get("item_id", "")), int(e.get("audio_start_ms", 0)))

    def _on_speech_stopped(self, e: dict[str, Any]) -> None:
        self.handler.on_speech_stopped(str(e.get("item_id", "")), int(e.get("audio_end_ms", 0)))

    def _on_response_created(self, e: dict[str, Any]) -> None:
        self.handler.on_response_created(str(e["response"]["id"]))

    def _on_audio_delta(self, e: dict[str, Any]) -> None:
        pcm = p.decode_pcm16(e["delta"])
        self.handler.on_audio_delta(str(e["response_id"]), str(e["item_id"]), pcm)

    def _on_audio_done(self, e: dict[str, Any]) -> None:
        self.handler.on_audio_done(str(e["response_id"]), str(e["item_id"]))

    def _on_response_done(self, e: dict[str, Any]) -> None:
        response = e["response"]
        self.handler.on_response_done(str(response["id"]), str(response.get("status", "")))

    def _on_user_transcript(self, e: dict[str, Any]) -> None:
        self.handler.on_transcript("user", str(e.get("item_id", "")), str(e["transcript"]))

    def _on_assistant_transcript(self, e: dict[str, Any]) -> None:
        self.handler.on_transcript("assistant", str(e.get("item_id", "")), str(e["transcript"]))

    def _on_error(self, e: dict[str, Any]) -> None:
        code, message = p.error_summary(e)
        self.handler.on_error(code, message, p.ERROR_ACTIONS.get(code, "warn"))


_DISPATCH = {
    "input_audio_buffer.speech_started": RealtimeClient._on_speech_started,
    "input_audio_buffer.speech_stopped": RealtimeClient._on_speech_stopped,
    "response.created": RealtimeClient._on_response_created,
    "response.output_audio.delta": RealtimeClient._on_audio_delta,
    "response.output_audio.done": RealtimeClient._on_audio_done,
    "response.done": RealtimeClient._on_response_done,
    "conversation.item.input_audio_transcription.completed":
        RealtimeClient._on_user_transcript,
    "response.output_audio_transcript.done": RealtimeClient._on_assistant_transcript,
    "error": RealtimeClient._on_error,
}


def _close_info(data: bytes) -> tuple[int | None, str]:
    if len(data) >= 2:
        code = struct.unpack("!H", data[:2])[0]
        return code, data[2:].decode("utf-8", "replace")[:200]
    return None, ""


def _close_error(code: int | None, reason: str, error: tuple[str, str] | None) -> RealtimeError:
    said = f" after error {error[0]}: {error[1]}" if error else ""
    meaning = p.CLOSE_MEANINGS.get(code or 0, f"closed with code {code}")
    kind = {p.CLOSE_AUTH: "auth", p.CLOSE_BAD_REQUEST: "protocol",
            p.CLOSE_SESSION_EXPIRED: "session_expired"}.get(code or 0, "network")
    return RealtimeError(kind, f"realtime service {meaning}{said}", close_code=code)

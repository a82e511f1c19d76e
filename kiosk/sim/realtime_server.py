"""The simulated realtime service: a GA WebSocket endpoint with token checks, session.update,
an energy server VAD over appended audio, transcription, streamed answers, cancellation,
truncate validation, and the faults tests ask for."""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection

from kiosk.session import protocol as p
from kiosk.sim.records import RealtimeConnection
from kiosk.sim.responder import Response, ToolCall, new_id
from kiosk.sim.session_shape import check_update, default_session, merge_update
from kiosk.sim.vad import EnergyVad

if TYPE_CHECKING:
    from kiosk.sim.simulator import Simulator


class RealtimeSession:
    """Serves one WebSocket connection (runs in the websockets server's handler thread)."""

    def __init__(self, sim: Simulator, ws: ServerConnection, record: RealtimeConnection) -> None:
        self.sim = sim
        self.ws = ws
        self.rec = record
        self._send_lock = threading.Lock()
        self._event_no = 0
        self.opened_at = time.monotonic()
        self.vad = EnergyVad(sim.knobs.vad_threshold_rms)
        self.samples_in = 0
        self.buffer_samples = 0  # uncommitted input audio
        self.user_item: str | None = None
        self.last_item: str | None = None
        self.response: Response | ToolCall | None = None
        self.tool_calls: set[str] = set()  # call ids of function calls made
        self.responses: dict[str, Response] = {}  # by assistant item id
        self.events_received = 0
        self.closed = False

    def _record(self, change: Callable[[], None]) -> None:
        self.sim.record(change, self.rec)

    def _set_session(self, session: dict[str, Any]) -> None:
        self._record(lambda: setattr(self.rec, "session", session))

    # -- sending -----------------------------------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        with self._send_lock:
            if self.closed:
                return
            self._event_no += 1
            event = {"event_id": f"event_sim_{self.rec.index}_{self._event_no}", **event}
            wire = dict(event)
            if self.sim.knobs.beta_names:
                wire["type"] = p.GA_TO_BETA.get(event["type"], event["type"])
            self._record(lambda: self.rec.server_events.append(event))
            try:
                self.ws.send(json.dumps(wire))
            except (ConnectionClosed, OSError):
                self.closed = True

    def send_raw(self, data: str | bytes) -> None:
        with self._send_lock:
            if not self.closed:
                try:
                    self.ws.send(data)
                except (ConnectionClosed, OSError):
                    self.closed = True

    def error(self, code: str, message: str, *, kind: str = "invalid_request_error",
              event_id: str | None = None, param: str | None = None) -> None:
        self.send({"type": "error", "error": {"type": kind, "code": code, "message": message,
                                              "param": param, "event_id": event_id}})

    def close(self, code: int, reason: str = "") -> None:
        self._record(lambda: setattr(self.rec, "close_code", code))
        if self.response is not None:
            self.response.cancel("connection_closed")
        with self._send_lock:
            self.closed = True
        with contextlib.suppress(ConnectionClosed, OSError):
            self.ws.close(code, reason)

    def drop(self) -> None:
        """Lose the link without a close frame, like a dead network."""
        if self.response is not None:
            self.response.cancel("connection_lost")
        with self._send_lock:
            self.closed = True
        with contextlib.suppress(OSError):
            self.ws.socket.shutdown(socket.SHUT_RDWR)
        self.ws.socket.close()

    # -- main loop ---------------------------------------------------------------------------

    def serve(self) -> None:
        headers = self.rec.headers
        query = parse_qs(urlsplit(self.rec.path).query)
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        self._record(lambda: setattr(self.rec, "token", token))
        if "openai-beta" in headers:
            self.error("beta_api_shape_disabled", "The beta Realtime API has been shut down; "
                                                  "remove the OpenAI-Beta header.")
            self.close(p.CLOSE_BAD_REQUEST, "beta api shape disabled")
            return
        if not token or not self.sim.accounts.realtime_token_ok(token):
            self.error("invalid_api_key", "Incorrect or expired API key provided.",
                       kind="invalid_request_error")
            self.close(p.CLOSE_AUTH, "invalid api key")
            return
        model = (query.get("model") or ["gpt-realtime"])[0]
        if model not in self.sim.knobs.realtime_models:
            # Assumed like the service's other refusals: an error event, then close 4000.
            self.error("model_not_found", f"The model '{model}' does not exist or you do not "
                       "have access to it.", param="model")
            self.close(p.CLOSE_BAD_REQUEST, "model not found")
            return
        self._set_session(default_session(model))
        self.send({"type": "session.created", "session": self.rec.session})
        try:
            self._loop()
        finally:
            if self.response is not None:
                self.response.cancel("connection_closed")
            self.closed = True
            self._record(lambda: setattr(self.rec, "open", False))

    def _loop(self) -> None:
        while not self.closed:
            max_s = self.sim.knobs.session_max_s
            if max_s is not None and time.monotonic() - self.opened_at >= max_s:
                self.error("session_expired", "Your session hit the maximum duration.")
                self.close(p.CLOSE_SESSION_EXPIRED, "session expired")
                return
            try:
                message = self.ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                self._record(functools.partial(setattr, self.rec, "close_code", code))
                return
            self._handle(message)
            drop_after = self.sim.knobs.drop_after_events
            if drop_after is not None and self.events_received >= drop_after:
                self.sim.knobs.drop_after_events = None  # one-shot
                self.drop()
                return

    def _handle(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._record(lambda: self.rec.bad_messages.append(f"binary {len(message)}"))
            self.error("invalid_request_error", "Binary frames are not supported.")
            return
        try:
            event = json.loads(message)
        except ValueError:
            self._record(lambda: self.rec.bad_messages.append(message[:200]))
            self.error("invalid_json", "The message is not valid JSON.")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error("invalid_request_error", "Events need a type.")
            return
        self.events_received += 1
        self._record(lambda: self.rec.client_events.append(event))
        handler = _HANDLERS.get(event["type"])
        if handler is None:
            self.error("invalid_request_error", f"Invalid value: '{event['type']}'.",
                       event_id=event.get("event_id"), param="type")
            return
        handler(self, event)

    # -- client events -----------------------------------------------------------------------

    def _session_update(self, event: dict[str, Any]) -> None:
        rejected = check_update(event.get("session"))
        if rejected is not None:
            self.error(rejected.code, rejected.message, param=rejected.param,
                       event_id=event.get("event_id") if rejected.names_event else None)
            if rejected.closes:
                self.close(p.CLOSE_BAD_REQUEST, "beta api shape disabled")
            return
        merged = merge_update(self.rec.session, event["session"])
        self._set_session(merged)
        td = merged["audio"]["input"].get("turn_detection") or {}
        self.vad.silence_duration_ms = int(td.get("silence_duration_ms", 500))
        self.vad.prefix_padding_ms = int(td.get("prefix_padding_ms", 300))
        self.send({"type": "session.updated", "session": merged})

    def _append(self, event: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(event.get("audio", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            self.error("invalid_value", "Invalid base64 audio.", param="audio")
            return
        if len(pcm) % 2:
            self.error("invalid_value", "Audio must be whole PCM16 samples.", param="audio")
            return
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        self._record(lambda: self.rec.audio_chunks.append(samples))
        self.samples_in += len(samples)
        self.buffer_samples += len(samples)
        td = self.rec.session["audio"]["input"].get("turn_detection")
        if not td:
            return
        for vad_event in self.vad.feed(samples):
            if vad_event.kind == "started":
                self._speech_started(vad_event.at_ms, td)
            else:
                self._speech_stopped(vad_event.at_ms, td)

    def _speech_started(self, at_ms: int, td: dict[str, Any]) -> None:
        self.user_item = new_id("item")
        self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": at_ms,
                   "item_id": self.user_item})
        if self.response is not None and td.get("interrupt_response", True):
            self.response.cancel("turn_detected")

    def _speech_stopped(self, at_ms: int, td: dict[str, Any]) -> None:
        item = self.user_item or new_id("item")
        self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": at_ms,
                   "item_id": item})
        now = time.monotonic()
        self._record(lambda: self.rec.speech_stopped_at.append(now))
        if self.sim.knobs.drop_before_answer:
            self.sim.knobs.drop_before_answer = False  # one-shot
            self.drop()
            return
        self._commit(item)
        if td.get("create_response", True) and self.response is None:
            self._respond()

    def _commit(self, item: str) -> None:
        self.buffer_samples = 0
        self.send({"type": "input_audio_buffer.committed", "previous_item_id": self.last_item,
                   "item_id": item})
        user_item = {"id": item, "object": "realtime.item", "type": "message", "role": "user",
                     "status": "completed",
                     "content": [{"type": "input_audio", "transcript": None}]}
        self.send({"type": "conversation.item.added", "previous_item_id": self.last_item,
                   "item": user_item})
        self.last_item = item
        if self.rec.session["audio"]["input"].get("transcription"):
            text = self.sim.knobs.user_transcript
            self.send({"type": "conversation.item.input_audio_transcription.delta",
                       "item_id": item, "content_index": 0, "delta": text})
            self.send({"type": "conversation.item.input_audio_transcription.completed",
                       "item_id": item, "content_index": 0, "transcript": text,
                       "usage": {"type": "duration", "seconds": 1.0}})

    def _respond(self) -> None:
        k = self.sim.knobs
        tools = [t for t in self.rec.session.get("tools") or [] if t.get("type") == "function"]
        if k.call_tool_next and tools:
            k.call_tool_next = False  # one-shot
            call = ToolCall(self.send, name=str(tools[0].get("name")),
                            arguments=k.tool_arguments, previous_item_id=self.last_item,
                            on_finished=self._finished)
            self.response, self.last_item = call, call.item_id
            self.tool_calls.add(call.call_id)
            call.start()
            return
        # audio.output.speed stretches the answer like the service's slower speech does.
        speed = self.rec.session["audio"]["output"].get("speed") or 1.0
        response = Response(self.send, answer_s=k.answer_s / speed, f0_hz=k.voice_f0_hz,
                            speed=k.stream_speed, chunk_ms=k.chunk_ms, text=k.answer_text,
                            previous_item_id=self.last_item, on_finished=self._finished,
                            delay_s=k.answer_delay_s, voice=k.answer_voice)
        self.response = response
        self.responses[response.item_id] = response
        self.last_item = response.item_id
        response.start()

    def _finished(self, response: Response | ToolCall) -> None:
        if response.status == "cancelled":
            self._record(lambda: self.rec.cancelled_responses.append(response.id))
        if self.response is response:
            self.response = None

    def _commit_event(self, event: dict[str, Any]) -> None:
        if self.buffer_samples * 1000 // 24000 < 100:
            self.error("input_audio_buffer_commit_empty", "Buffer too small: expected at "
                       "least 100ms of audio.", event_id=event.get("event_id"))
            return
        self._commit(new_id("item"))

    def _clear(self, event: dict[str, Any]) -> None:
        self.buffer_samples = 0
        self.send({"type": "input_audio_buffer.cleared"})

    def _cancel(self, event: dict[str, Any]) -> None:
        response = self.response
        wanted = event.get("response_id")
        if response is None or (wanted and wanted != response.id):
            self.error("response_cancel_not_active", "Cancellation failed: no active response "
                       "found.", event_id=event.get("event_id"))
            return
        response.cancel("client_cancelled")

    def _create_response(self, event: dict[str, Any]) -> None:
        if self.response is not None:
            self.error("conversation_already_has_active_response", "Conversation already has "
                       "an active response.", event_id=event.get("event_id"))
            return
        self._respond()

    def _truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        response = self.responses.get(str(item_id))
        if response is None:
            self.error("invalid_value", f"Item {item_id} is not an assistant audio item.",
                       param="item_id", event_id=event.get("event_id"))
        elif event.get("content_index") != 0:
            self.error("invalid_value", "Only content_index 0 has audio.",
                       param="content_index", event_id=event.get("event_id"))
        elif not isinstance(end_ms, int) or end_ms < 0 or end_ms > response.sent_ms:
            self.error("invalid_value", f"audio_end_ms {end_ms} is past the audio sent "
                       f"({response.sent_ms} ms).", param="audio_end_ms",
                       event_id=event.get("event_id"))
        else:
            entry = {"item_id": item_id, "audio_end_ms": end_ms, "sent_ms": response.sent_ms}
            self._record(lambda: self.rec.truncations.append(entry))
            self.send({"type": "conversation.item.truncated", "item_id": item_id,
                       "content_index": 0, "audio_end_ms": end_ms})

    def _item_create(self, event: dict[str, Any]) -> None:
        item = dict(event.get("item") or {})
        if item.get("type") == "function_call_output" and item.get("call_id") not in \
                self.tool_calls:
            self.error("invalid_value", f"No function call with call_id "
                       f"'{item.get('call_id')}'.", param="item.call_id",
                       event_id=event.get("event_id"))
            return
        item.setdefault("id", new_id("item"))
        if isinstance(item.get("content"), list):
            # Like the service: the item comes back without the audio it carried.
            item["content"] = [{**part, "audio": None} if part.get("type") == "input_audio"
                               else part for part in item["content"] if isinstance(part, dict)]
        self.send({"type": "conversation.item.added", "previous_item_id": self.last_item,
                   "item": item})
        self.last_item = item["id"]

    def _ignore(self, event: dict[str, Any]) -> None:
        pass


_HANDLERS = {
    "session.update": RealtimeSession._session_update,
    "input_audio_buffer.append": RealtimeSession._append,
    "input_audio_buffer.commit": RealtimeSession._commit_event,
    "input_audio_buffer.clear": RealtimeSession._clear,
    "response.cancel": RealtimeSession._cancel,
    "response.create": RealtimeSession._create_response,
    "conversation.item.truncate": RealtimeSession._truncate,
    "conversation.item.create": RealtimeSession._item_create,
    "conversation.item.delete": RealtimeSession._ignore,
    "conversation.item.retrieve": RealtimeSession._ignore,
}

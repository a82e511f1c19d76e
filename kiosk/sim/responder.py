"""One simulated assistant response: the GA event sequence around a streamed synthetic voice,
paced faster than real time, cancellable at any chunk."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from kiosk.sim.voice import SAMPLE_RATE_HZ, spoken_answer, synth_voice

Send = Callable[[dict[str, Any]], None]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class Response:
    """Streams one answer in its own thread. `sent_ms` is the audio sent so far (the limit a
    truncate may name)."""

    def __init__(self, send: Send, *, answer_s: float, f0_hz: float, speed: float,
                 chunk_ms: int, text: str, previous_item_id: str | None,
                 on_finished: Callable[[Response], None], delay_s: float = 0.0,
                 voice: str = "synth") -> None:
        self.id = new_id("resp")
        self.item_id = new_id("item")
        self._send = send
        self._pcm = synth_voice(answer_s, f0_hz)
        if voice == "speech":  # real speech at the synthetic voice's level
            self._pcm = spoken_answer(text, answer_s, level_like=self._pcm)
        self._speed = max(0.1, speed)
        self._chunk = max(1, SAMPLE_RATE_HZ * chunk_ms // 1000)
        self._text = text
        self._previous = previous_item_id
        self._on_finished = on_finished
        self._delay_s = delay_s
        self._cancel = threading.Event()
        self.cancel_reason = ""
        self.sent_samples = 0
        self.status = "in_progress"
        self._thread = threading.Thread(target=self._run, name="sim-response", daemon=True)

    @property
    def sent_ms(self) -> int:
        return self.sent_samples * 1000 // SAMPLE_RATE_HZ

    def start(self) -> None:
        self._thread.start()

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self._cancel.set()

    def join(self, timeout_s: float) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _ids(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item_id, "output_index": 0,
                "content_index": 0}

    def _item(self, status: str, transcript: str | None) -> dict[str, Any]:
        content = [] if transcript is None else [{"type": "output_audio",
                                                   "transcript": transcript}]
        return {"id": self.item_id, "object": "realtime.item", "type": "message",
                "role": "assistant", "status": status, "content": content}

    def _response(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "object": "realtime.response", "status": status,
                                "output": output, "output_modalities": ["audio"]}
        if status == "cancelled":
            body["status_details"] = {"type": "cancelled", "reason": self.cancel_reason
                                      or "client_cancelled"}
        return body

    def _run(self) -> None:
        send = self._send
        send({"type": "response.created", "response": self._response("in_progress", [])})
        item = self._item("in_progress", None)
        send({"type": "response.output_item.added", "response_id": self.id,
              "output_index": 0, "item": item})
        send({"type": "conversation.item.added", "previous_item_id": self._previous,
              "item": item})
        send({"type": "response.content_part.added", **self._ids(),
              "part": {"type": "audio", "transcript": ""}})
        self._cancel.wait(self._delay_s)  # a service still thinking: no audio yet
        words = self._text.split()
        chunks = range(0, len(self._pcm), self._chunk)
        per_word = max(1, len(chunks) // max(1, len(words)))
        said: list[str] = []
        for n, start in enumerate(chunks):
            if self._cancel.is_set():
                break
            block = self._pcm[start:start + self._chunk]
            send({"type": "response.output_audio.delta", **self._ids(),
                  "delta": base64.b64encode(block.astype("<i2").tobytes()).decode()})
            self.sent_samples += len(block)
            if n % per_word == 0 and len(said) < len(words):
                word = (" " if said else "") + words[len(said)]
                said.append(words[len(said)])
                send({"type": "response.output_audio_transcript.delta", **self._ids(),
                      "delta": word})
            # Pace like the service: faster than real time, but not all at once.
            self._cancel.wait(len(block) / SAMPLE_RATE_HZ / self._speed)
        if self._cancel.is_set():
            self.status = "cancelled"
            item = self._item("incomplete", " ".join(said))
            send({"type": "response.output_item.done", "response_id": self.id,
                  "output_index": 0, "item": item})
            send({"type": "response.done", "response": self._response("cancelled", [item])})
        else:
            self.status = "completed"
            said = words
            transcript = " ".join(said)
            send({"type": "response.output_audio.done", **self._ids()})
            send({"type": "response.output_audio_transcript.done", **self._ids(),
                  "transcript": transcript})
            send({"type": "response.content_part.done", **self._ids(),
                  "part": {"type": "audio", "transcript": transcript}})
            item = self._item("completed", transcript)
            send({"type": "response.output_item.done", "response_id": self.id,
                  "output_index": 0, "item": item})
            send({"type": "conversation.item.done", "previous_item_id": self._previous,
                  "item": item})
            send({"type": "response.done", "response": self._response("completed", [item])})
        self._on_finished(self)


class ToolCall:
    """A response that calls a function tool instead of speaking; same interface as
    `Response`. The response stays active for `finish_s` after the arguments are done (the
    service finishing it): a client asking for the next response too early is refused, as
    the service would refuse it."""

    finish_s = 0.2

    def __init__(self, send: Send, *, name: str, arguments: str,
                 previous_item_id: str | None,
                 on_finished: Callable[[ToolCall], None]) -> None:
        self.id = new_id("resp")
        self.item_id = new_id("item")
        self.call_id = new_id("call")
        self.name = name
        self._send = send
        self._arguments = arguments
        self._previous = previous_item_id
        self._on_finished = on_finished
        self.cancel_reason = ""
        self.sent_samples = 0
        self.status = "in_progress"
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-tool-call", daemon=True)

    @property
    def sent_ms(self) -> int:
        return 0

    def _item(self, status: str, arguments: str) -> dict[str, Any]:
        return {"id": self.item_id, "object": "realtime.item", "type": "function_call",
                "status": status, "name": self.name, "call_id": self.call_id,
                "arguments": arguments}

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        send, ids = self._send, {"response_id": self.id, "item_id": self.item_id,
                                 "output_index": 0, "call_id": self.call_id}
        body = {"id": self.id, "object": "realtime.response", "status": "in_progress",
                "output": [], "output_modalities": ["audio"]}
        send({"type": "response.created", "response": body})
        item = self._item("in_progress", "")
        send({"type": "response.output_item.added", "response_id": self.id, "output_index": 0,
              "item": item})
        send({"type": "conversation.item.added", "previous_item_id": self._previous,
              "item": item})
        send({"type": "response.function_call_arguments.delta", **ids,
              "delta": self._arguments})
        send({"type": "response.function_call_arguments.done", **ids, "name": self.name,
              "arguments": self._arguments})
        self._cancel.wait(self.finish_s)
        item = self._item("completed", self._arguments)
        send({"type": "response.output_item.done", "response_id": self.id, "output_index": 0,
              "item": item})
        send({"type": "conversation.item.done", "previous_item_id": self._previous,
              "item": item})
        self.status = "completed"
        send({"type": "response.done", "response": {**body, "status": "completed",
                                                    "output": [item]}})
        self._on_finished(self)

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason  # the call is made: it only finishes sooner
        self._cancel.set()

    def join(self, timeout_s: float) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)


def pcm_bytes(samples: np.ndarray) -> bytes:
    return samples.astype("<i2").tobytes()

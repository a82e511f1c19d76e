"""The realtime service's wire vocabulary, in one place: GA and beta event names, the
session.update built from the gateway's beta-shaped voice_config, client event builders,
error codes and close codes, and the checks every incoming message must pass.

Used by the kiosk's client (realtime.py) and by the simulator (kiosk.sim), so both sides speak
from the same table.
"""

from __future__ import annotations

import binascii
import itertools
import logging
import sys
from typing import Any

import numpy as np

# Every 20 ms of speech crosses JSON and base64 both ways: orjson and pybase64 (SIMD) do it
# in a fifth of the CPU of the standard library (see bench/audio.py), byte-identical output.
import orjson
import pybase64

from kiosk import language as lang
from kiosk.settings import RealtimeSettings

log = logging.getLogger("kiosk.session.protocol")

SAMPLE_RATE_HZ = 24000
_LITTLE_ENDIAN = sys.byteorder == "little"

# Beta server event names -> GA names. The simulator's beta mode uses the reverse.
BETA_TO_GA: dict[str, str] = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}
GA_TO_BETA: dict[str, str] = {ga: beta for beta, ga in BETA_TO_GA.items()}

REALTIME_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse",
                   "marin", "cedar")

# Beta `*_audio_format` values -> GA format objects.
FORMATS: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": SAMPLE_RATE_HZ},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}

# What the kiosk does with each `error.code` (anything else: log a warning, keep going).
ERROR_ACTIONS: dict[str, str] = {
    "session_expired": "end",  # the 60-minute cap; a close 1001 follows
    "response_cancel_not_active": "ignore",  # our cancel raced the server's own; harmless
    "input_audio_buffer_commit_empty": "ignore",
    "conversation_already_has_active_response": "ignore",
    "invalid_api_key": "auth",  # a close 3000 follows
    "beta_api_shape_disabled": "protocol",  # a close 4000 follows
    "model_not_found": "protocol",  # the model asked for is not (or no longer) offered
    "invalid_value": "warn",
    "unknown_parameter": "warn",
}

# WebSocket close codes the service uses.
CLOSE_NORMAL = 1000
CLOSE_SESSION_EXPIRED = 1001
CLOSE_AUTH = 3000
CLOSE_BAD_REQUEST = 4000
CLOSE_MEANINGS: dict[int, str] = {
    CLOSE_NORMAL: "closed normally",
    CLOSE_SESSION_EXPIRED: "session expired (the service's time cap)",
    CLOSE_AUTH: "authentication failed (bad or expired session token; check the kiosk's "
                "clock and the gateway's realtime credentials)",
    CLOSE_BAD_REQUEST: "request shape rejected (beta protocol or bad session config)",
}


class ProtocolViolation(ValueError):
    """An incoming message that breaks the protocol: logged and dropped, never fatal."""


def ga_type(event_type: str) -> str:
    """The GA name of a server event type (beta names are translated, GA names kept)."""
    return BETA_TO_GA.get(event_type, event_type)


def parse_message(raw: str | bytes, max_bytes: int) -> dict[str, Any]:
    """Decode one text message into an event dict with a string `type`."""
    if isinstance(raw, bytes):
        raise ProtocolViolation(f"binary frame of {len(raw)} bytes (the protocol is JSON text)")
    if len(raw) > max_bytes:
        # A str's length in characters is a lower bound of its UTF-8 size.
        raise ProtocolViolation(f"message of {len(raw) // 1024} KiB exceeds "
                                f"realtime.max_message_kib ({max_bytes // 1024} KiB)")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolViolation(f"message is not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ProtocolViolation("message is not an event object with a type")
    return event


def decode_pcm16(b64: Any) -> bytes:
    """Base64 PCM16 from an audio delta; rejects bad base64 and odd byte counts."""
    if not isinstance(b64, str):
        raise ProtocolViolation("audio delta is not a string")
    try:
        pcm = pybase64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolViolation("audio delta is not valid base64") from None
    if len(pcm) % 2:
        raise ProtocolViolation(f"audio delta has an odd byte count ({len(pcm)}); PCM16 "
                                "needs whole samples")
    return pcm


def pcm16_bytes(samples: np.ndarray) -> bytes:
    """int16 samples as the service's little-endian PCM16 bytes (one copy on the Pi and x86)."""
    if _LITTLE_ENDIAN:
        return samples.tobytes()
    return samples.astype("<i2").tobytes()


def encode_pcm16(pcm: bytes) -> str:
    return pybase64.b64encode_as_string(pcm)


def pcm_ms(nbytes: int) -> int:
    """Milliseconds of 24 kHz PCM16 mono in `nbytes` (rounded down)."""
    return nbytes * 1000 // (SAMPLE_RATE_HZ * 2)


# -- client events -----------------------------------------------------------------------------

_ids = itertools.count(1)


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": f"evt_kiosk_{next(_ids)}", **fields}


def append_audio(pcm: bytes) -> dict[str, Any]:
    # Fifty a second: built directly rather than through _event's keyword merge.
    return {"type": "input_audio_buffer.append", "event_id": f"evt_kiosk_{next(_ids)}",
            "audio": encode_pcm16(pcm)}


def truncate(item_id: str, audio_end_ms: int, content_index: int = 0) -> dict[str, Any]:
    return _event("conversation.item.truncate", item_id=item_id, content_index=content_index,
                  audio_end_ms=max(0, int(audio_end_ms)))


def response_cancel(response_id: str | None = None) -> dict[str, Any]:
    return _event("response.cancel", **({"response_id": response_id} if response_id else {}))


def user_audio_item(pcm: bytes) -> dict[str, Any]:
    """A user message carrying recorded speech: how a question is asked again on a new link
    (the input buffer of the old one died with it)."""
    return _event("conversation.item.create", item={
        "type": "message", "role": "user",
        "content": [{"type": "input_audio", "audio": encode_pcm16(pcm)}]})


def response_create() -> dict[str, Any]:
    return _event("response.create")


def function_call_output(call_id: str, output: dict[str, Any]) -> dict[str, Any]:
    """The result of a tool call the model made, as a conversation item (`output` as JSON)."""
    return _event("conversation.item.create", item={
        "type": "function_call_output", "call_id": call_id,
        "output": orjson.dumps(output).decode()})


NURSE_TOOL_NAME = "request_nurse"
NURSE_TOOL: dict[str, Any] = {
    "type": "function",
    "name": NURSE_TOOL_NAME,
    "description": (
        "Call a nurse to the patient's bed through the ward's nurse call system. Use it when "
        "the patient asks for a nurse or for help from staff, or says they are in pain, "
        "unwell, have fallen or need help urgently. Tell the patient what the result says."),
    "parameters": {
        "type": "object",
        "properties": {"reason": {"type": "string", "description": (
            "A few words on why the nurse is needed, e.g. 'pain in the chest' or 'wants to "
            "go to the toilet'.")}},
        "required": ["reason"],
        "additionalProperties": False,
    },
}
"""The one tool the kiosk offers (with `realtime.nurse_call_tool: true`)."""


def session_update(voice_config: dict[str, Any], realtime: RealtimeSettings,
                   language: str | None = None) -> dict[str, Any]:
    """GA session.update from the gateway's flat beta voice_config plus the kiosk's overrides.
    `language` (kiosk.language, a BCP 47 tag) sets the transcription language and adds
    "Always answer in <language>." after the instructions."""
    vc = voice_config or {}
    tag = lang.parse(language) if language else None
    audio_in: dict[str, Any] = {"format": dict(FORMATS["pcm16"])}
    fmt = vc.get("input_audio_format")
    if fmt not in (None, "pcm16"):
        # The kiosk's audio path is PCM16 at 24 kHz; G.711 would need a codec we don't carry.
        log.info("gateway asked for %s input audio; the kiosk sends pcm16 at 24 kHz", fmt)
    transcription = vc.get("input_audio_transcription")
    if isinstance(transcription, dict) and transcription.get("model"):
        tr: dict[str, Any] = {"model": transcription["model"]}
        said = tag.iso639_1 if tag else transcription.get("language") or vc.get("language")
        if isinstance(said, str) and said:
            tr["language"] = said
        for key in ("prompt",):
            if isinstance(transcription.get(key), str):
                tr[key] = transcription[key]
        audio_in["transcription"] = tr
    audio_in["turn_detection"] = _turn_detection(vc.get("turn_detection"), realtime)
    noise = vc.get("input_audio_noise_reduction")
    if isinstance(noise, dict) and noise.get("type") in ("near_field", "far_field"):
        audio_in["noise_reduction"] = {"type": noise["type"]}

    audio_out: dict[str, Any] = {"format": dict(FORMATS["pcm16"]), "speed": realtime.speed}
    voice = realtime.voice or vc.get("voice")
    if voice in REALTIME_VOICES:
        audio_out["voice"] = voice
    elif voice and voice not in _warned_voices:
        _warned_voices.add(voice)  # once per run, not at every link
        log.warning("voice %r from the gateway is not a realtime voice; using the service's "
                    "default (set realtime.voice to choose one)", voice)
    session: dict[str, Any] = {"type": "realtime", "output_modalities": ["audio"],
                               "audio": {"input": audio_in, "output": audio_out}}
    if realtime.model:
        session["model"] = realtime.model
    instructions = realtime.instructions or vc.get("instructions")
    if tag is not None:
        # After the ward's own instructions, so it is the last word on the language.
        instructions = "\n\n".join(filter(None, [instructions, tag.answer_instruction()]))
    if instructions:
        session["instructions"] = instructions
    if realtime.nurse_call_tool:
        session["tools"] = [NURSE_TOOL]
        session["tool_choice"] = "auto"
    return _event("session.update", session=session)


_warned_voices: set[str] = set()


def rejection_advice(code: int | None, error: tuple[str, str] | None) -> tuple[str, str]:
    """(fault kind, what to tell IT staff) when the service closed the link with 4000 (or an
    error that comes before it): a model it does not offer is a setting to change, anything
    else is a protocol the kiosk does not speak."""
    said = f" ({error[0]}: {error[1]})" if error else ""
    if error is not None and error[0] == "model_not_found":
        return "config", (f"the realtime service does not offer the model asked for{said}; "
                          "set realtime.model to one it has (the gateway's default may be a "
                          "retired model)")
    return "protocol", (f"realtime service rejected the kiosk's requests (close {code}){said}; "
                        "update voice-kiosk or check realtime.url")


_TD_KEYS = {
    "server_vad": ("threshold", "prefix_padding_ms", "silence_duration_ms", "create_response",
                   "idle_timeout_ms"),
    "semantic_vad": ("eagerness", "create_response"),
}


def _turn_detection(td: Any, realtime: RealtimeSettings) -> dict[str, Any]:
    td = td if isinstance(td, dict) else {}
    kind = td.get("type") if td.get("type") in _TD_KEYS else "server_vad"
    out: dict[str, Any] = {"type": kind}
    for key in _TD_KEYS[kind]:
        if td.get(key) is not None:
            out[key] = td[key]
    out.setdefault("create_response", True)
    out["interrupt_response"] = realtime.interrupt_response
    return out


def error_summary(event: dict[str, Any]) -> tuple[str, str]:
    """(code, message) of an `error` event, tolerant of missing fields."""
    found = event.get("error")
    err: dict[str, Any] = found if isinstance(found, dict) else {}
    code = err.get("code") or err.get("type") or "unknown"
    message = err.get("message") or ""
    return str(code), str(message)[:300]


def dumps(event: dict[str, Any]) -> bytes:
    """One client event as compact UTF-8 JSON (sent as a text frame)."""
    return orjson.dumps(event)

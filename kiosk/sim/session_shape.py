"""The realtime session object the simulator keeps for a connection: its defaults (the GA
interface's), what a `session.update` may change, and how an update is merged in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kiosk.session import protocol as p

# Fields of the retired beta interface: the live service refuses a session that has them.
BETA_SESSION_FIELDS = ("modalities", "input_audio_format", "output_audio_format",
                       "turn_detection", "input_audio_transcription", "voice")


@dataclass(frozen=True)
class Rejection:
    """Why the service refuses an update: the error event's fields, and whether it also
    closes the connection (the beta shape)."""

    code: str
    message: str
    param: str | None = None
    names_event: bool = False  # the error carries the update's event_id
    closes: bool = False


def default_session(model: str) -> dict[str, Any]:
    # Exactly the fields of the SDK's session type (the live service adds an id and object).
    return {"type": "realtime", "model": model, "output_modalities": ["audio"], "instructions": "",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": None,
                                "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                                   "prefix_padding_ms": 300,
                                                   "silence_duration_ms": 500,
                                                   "create_response": True,
                                                   "interrupt_response": True}},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000},
                                 "voice": "alloy"}}}


def check_update(session: Any) -> Rejection | None:
    """What the live service says to this `session.update` payload, or None: accepted."""
    if not isinstance(session, dict):
        return Rejection("missing_required_parameter", "Missing session.", param="session")
    if session.get("type") != "realtime" or any(k in session for k in BETA_SESSION_FIELDS):
        return Rejection("beta_api_shape_disabled", "Beta session fields are no longer "
                                                    "supported; use the GA session shape.",
                         closes=True)
    output = session.get("audio", {}).get("output", {})
    voice = output.get("voice")
    if voice is not None and voice not in p.REALTIME_VOICES:
        return Rejection("invalid_value", f"Invalid value: '{voice}'.",
                         param="session.audio.output.voice", names_event=True)
    speed = output.get("speed")
    if speed is not None and not (isinstance(speed, (int, float))
                                  and not isinstance(speed, bool) and 0.25 <= speed <= 1.5):
        return Rejection("invalid_value", f"Invalid 'session.audio.output.speed': {speed}; "
                                          "expected a number from 0.25 to 1.5.",
                         param="session.audio.output.speed", names_event=True)
    return None


def merge_update(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of `current` with `update` merged in, nested objects key by key."""
    out: dict[str, Any] = json.loads(json.dumps(current))
    _deep_merge(out, update)
    return out


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value

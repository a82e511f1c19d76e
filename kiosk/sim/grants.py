"""What the simulated gateway puts in a session grant, and how it checks request bodies.

Follows the real gateway as measured (protocol.md, section 1b): its own voice list (three of
which the realtime service lacks), unknown voices silently turned into "alloy", the VAD
sensitivity mapping, the adaptive-VAD quirk after a restart, `rtc_` session ids, and FastAPI's
422 shape for bodies it cannot read.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

VOICE_CONFIG: dict[str, Any] = {
    "voice": "alloy",
    "modalities": ["text", "audio"],
    "input_audio_format": "pcm16",
    "output_audio_format": "pcm16",
    "input_audio_transcription": {"model": "whisper-1"},
    "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                       "silence_duration_ms": 500},
}
"""The flat (beta-shaped) voice_config of a grant with nothing asked for, voice aside."""

GATEWAY_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")
"""Voices the gateway offers; fable, onyx and nova are not realtime voices."""

ADAPTIVE_FIRST_SILENCE_MS = 200
"""silence_duration_ms of the first adaptive-VAD session after a gateway restart (measured)."""

_SESSION_FIELDS: dict[str, str] = {"conversation_id": "str", "voice": "str", "language": "str",
                                   "vad_sensitivity": "int", "silence_duration_ms": "int",
                                   "adaptive_vad": "bool"}
_LOGIN_FIELDS = {"email": "str", "password": "str"}
_REFRESH_FIELDS = {"refresh_token": "str"}
REQUIRED = {"/api/auth/login": _LOGIN_FIELDS, "/api/auth/refresh": _REFRESH_FIELDS}


def select_voice(requested: str | None, default: str) -> str:
    """The gateway's choice: its default when none is asked for, "alloy" for a voice it does
    not know (silently, no error)."""
    if requested is None:
        return default
    return requested if requested in GATEWAY_VOICES else "alloy"


def vad_threshold(sensitivity: int | None) -> float:
    """Sensitivity 0-100 to a server-VAD threshold: 0.9 - s/100*0.8 (0.5 when not asked)."""
    if sensitivity is None:
        return 0.5
    s = max(0, min(100, sensitivity))
    return round(0.9 - s / 100 * 0.8, 2)


def voice_config(body: dict[str, Any], voice: str, session_number: int) -> dict[str, Any]:
    """The grant's voice_config for a validated request body. `session_number` counts grants
    since the gateway (re)started: adaptive VAD gives the first one a 200 ms silence."""
    config = {**VOICE_CONFIG, "voice": voice}
    if body.get("language") is not None:
        config["language"] = body["language"]
    td = dict(VOICE_CONFIG["turn_detection"])
    td["threshold"] = vad_threshold(body.get("vad_sensitivity"))
    if body.get("silence_duration_ms") is not None:
        td["silence_duration_ms"] = body["silence_duration_ms"]
    elif body.get("adaptive_vad") and session_number == 1:
        td["silence_duration_ms"] = ADAPTIVE_FIRST_SILENCE_MS
    config["turn_detection"] = td
    return config


def session_grant(*, url: str, model: str, token: str, expires_at: float, early: bool,
                  body: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A grant in the current form ({auth: {token}}) or the early one ({api_key}).
    `expires_at` is unix seconds (whole seconds, as the gateway sends, unless a test asked
    for a lifetime too short for that)."""
    grant: dict[str, Any] = {
        "url": url, "model": model,
        "session_id": "rtc_sim_" + secrets.token_urlsafe(16),
        "expires_at": expires_at,
        "conversation_id": body.get("conversation_id") or str(uuid.uuid4()),
        "voice_config": config}
    if early:
        grant["api_key"] = token
    else:
        grant["auth"] = {"type": "ephemeral_token", "token": token, "expires_at": expires_at}
        grant["audio_enhancements"] = {"noise_suppression": True,
                                       "vad_threshold": config["turn_detection"]["threshold"]}
    return grant


# -- FastAPI's 422 -----------------------------------------------------------------------------

def json_error(message: str) -> dict[str, Any]:
    """FastAPI's answer to a body that is not JSON."""
    return {"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error",
                        "input": {}, "ctx": {"error": message}}]}


def validate(path: str, body: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(coerced body, FastAPI-style errors) for a parsed JSON body on `path`."""
    if not isinstance(body, dict):
        return None, [{"type": "model_attributes_type", "loc": ["body"],
                       "msg": "Input should be a valid dictionary or object to extract fields "
                              "from", "input": body}]
    required = REQUIRED.get(path, {})
    fields = required or _SESSION_FIELDS
    errors: list[dict[str, Any]] = []
    clean: dict[str, Any] = dict(body)
    for name in required:
        if body.get(name) is None:
            errors.append({"type": "missing", "loc": ["body", name], "msg": "Field required",
                           "input": body})
    for name, kind in fields.items():
        value = body.get(name)
        if value is None:
            continue
        ok, coerced = _coerce(kind, value)
        if ok:
            clean[name] = coerced
        else:
            errors.append(_type_error(kind, name, value))
    return (None if errors else clean), errors


def _coerce(kind: str, value: Any) -> tuple[bool, Any]:
    """Pydantic's lax mode, for the three types the gateway's request models use."""
    if kind == "str":
        return isinstance(value, str), value
    if kind == "bool":
        if isinstance(value, bool):
            return True, value
        text = str(value).lower() if isinstance(value, (str, int)) else ""
        if text in ("true", "1", "yes", "on", "t", "y"):
            return True, True
        if text in ("false", "0", "no", "off", "f", "n"):
            return True, False
        return False, value
    if isinstance(value, bool):
        return True, int(value)
    if isinstance(value, int):
        return True, value
    if isinstance(value, float) and value.is_integer():
        return True, int(value)
    if isinstance(value, str):
        try:
            return True, int(value.strip())
        except ValueError:
            return False, value
    return False, value


def _type_error(kind: str, name: str, value: Any) -> dict[str, Any]:
    loc = ["body", name]
    if kind == "str":
        return {"type": "string_type", "loc": loc, "msg": "Input should be a valid string",
                "input": value}
    if kind == "bool":
        return {"type": "bool_parsing", "loc": loc, "msg": "Input should be a valid boolean, "
                "unable to interpret input", "input": value}
    if isinstance(value, str):
        return {"type": "int_parsing", "loc": loc, "msg": "Input should be a valid integer, "
                "unable to parse string as an integer", "input": value}
    return {"type": "int_type", "loc": loc, "msg": "Input should be a valid integer",
            "input": value}

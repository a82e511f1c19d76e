"""What the simulator remembers for tests, and the fault knobs tests turn at run time.

All records are appended under the simulator's condition variable, so a test can wait for
"the server received X" with `Simulator.wait_for(predicate, timeout_s)` instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SimKnobs:
    """Runtime-mutable behaviour of the simulator. Change fields while it runs."""

    # -- gateway ---------------------------------------------------------------------------------
    gateway_status: int | None = None
    """Force this HTTP status on /api/voice/realtime-session (401, 403, 429, 500, 503)."""
    gateway_fail_count: int | None = None
    """With gateway_status: fail only this many requests, then behave (None: until cleared)."""
    retry_after_s: float | None = 1.0
    """Retry-After sent with a forced 429 (None: no header)."""
    gateway_delay_s: float = 0.0
    """Answer every gateway request this much later (a slow gateway)."""
    gateway_malformed: str | None = None
    """"not_json" or "missing_fields": a broken session answer."""
    response_form: str = "current"
    """"current" ({auth: {token}}) or "early" ({api_key})."""
    token_ttl_s: float = 60.0
    """Lifetime of ephemeral realtime tokens."""
    access_ttl_s: float = 300.0
    """Lifetime of login access tokens."""
    refresh_ttl_s: float = 3600.0
    """Lifetime of login refresh tokens."""
    # -- realtime --------------------------------------------------------------------------------
    drop_after_events: int | None = None
    """Drop the next connection's TCP link (no close frame) after it sent this many events.
    One-shot: reset to None when it fires."""
    session_max_s: float | None = None
    """Send error session_expired then close 1001 this long after a connection opened."""
    beta_names: bool = False
    """Send beta event names (response.audio.delta ...) like an older compatible server."""
    answer_s: float = 1.5
    """Length of each spoken answer, seconds."""
    voice_f0_hz: float = 220.0
    """Fundamental of the synthetic answer voice, Hz."""
    stream_speed: float = 4.0
    """Answer audio is streamed this many times faster than real time."""
    chunk_ms: int = 100
    """Audio per response.output_audio.delta, ms."""
    answer_text: str = "Of course. A nurse will bring you some water soon."
    """Transcript of each answer."""
    user_transcript: str = "Could I have some water, please?"
    """What the simulated transcription 'hears' in every turn."""
    vad_threshold_rms: float = 600.0
    """Energy threshold of the server VAD (int16 RMS)."""


@dataclass
class GatewayRequest:
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any
    status: int = 0


@dataclass
class RealtimeConnection:
    """One WebSocket connection as the server saw it."""

    index: int
    path: str
    headers: dict[str, str]
    token: str | None = None
    client_events: list[dict[str, Any]] = field(default_factory=list)
    bad_messages: list[str] = field(default_factory=list)
    server_events: list[dict[str, Any]] = field(default_factory=list)
    audio_chunks: list[np.ndarray] = field(default_factory=list)
    speech_stopped_at: list[float] = field(default_factory=list)
    """time.monotonic() when each speech_stopped was sent: end of the patient's turn."""
    truncations: list[dict[str, Any]] = field(default_factory=list)
    """Accepted conversation.item.truncate: item_id, audio_end_ms, sent_ms (audio sent)."""
    cancelled_responses: list[str] = field(default_factory=list)
    close_code: int | None = None
    open: bool = True
    session: dict[str, Any] = field(default_factory=dict)

    @property
    def audio(self) -> np.ndarray:
        """All appended audio, decoded: int16 at 24 kHz, in arrival order."""
        if not self.audio_chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.audio_chunks)

    def client_types(self) -> list[str]:
        return [e.get("type", "") for e in self.client_events]

    def server_types(self) -> list[str]:
        return [e.get("type", "") for e in self.server_events]

    def events_of(self, kind: str, *, sent: bool = False) -> list[dict[str, Any]]:
        source = self.server_events if sent else self.client_events
        return [e for e in source if e.get("type") == kind]

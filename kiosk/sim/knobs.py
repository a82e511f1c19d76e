"""The simulator's fault and behaviour knobs, changed by tests while it runs.

Defaults reproduce what the real VoiceAssist gateway was measured to do (protocol.md,
section 1b): a retired preview model and a voice the realtime service lacks in its grants,
429s without Retry-After, refresh tokens that stay valid, ephemeral tokens shared between
kiosks. Only the slow parts (bcrypt, a slow speech service) default to instant, so tests
stay fast; set them to the measured figures when timing is what a test is about.
"""

from __future__ import annotations

from dataclasses import dataclass

MEASURED_MODEL = "gpt-4o-realtime-preview-2024-10-01"
"""The model the real gateway hands out by default: a preview the realtime service retired."""

REALTIME_MODELS = ("gpt-realtime", "gpt-realtime-2025-08-28", "gpt-realtime-mini",
                   "gpt-realtime-mini-2025-10-06")
"""Models the simulated realtime service serves (the GA family). Anything else, the retired
previews included, is refused like an unknown model."""


@dataclass
class SimKnobs:
    """Runtime-mutable behaviour of the simulator. Change fields while it runs; each request or
    connection reads them when it needs them."""

    # -- gateway: faults ---------------------------------------------------------------------------
    gateway_status: int | None = None
    """Force this HTTP status on /api/voice/realtime-session (401, 403, 429, 500, 503), before
    authentication, as a rate limiter or a broken gateway would. 429 answers exactly like the
    real gateway: `{"error": "Rate limit exceeded: 10 per 1 minute"}`, no `detail`."""
    gateway_fail_count: int | None = None
    """With gateway_status or upstream_fault: fail only this many requests, then behave
    (None: until cleared)."""
    retry_after_s: float | None = None
    """Retry-After header on a forced 429. None (the default) sends none, like the real
    gateway, whose rate limiter never does."""
    gateway_delay_s: float = 0.0
    """Answer every gateway request this much later (a slow network or a loaded gateway)."""
    gateway_malformed: str | None = None
    """"not_json" or "missing_fields": a broken session answer."""
    gateway_redirect: str | None = None
    """Answer the session endpoint with `gateway_redirect_status` and `Location:` this URL (a
    proxy or a moved gateway). A client must not carry X-API-Key or Authorization to another
    host; `kiosk.sim.recorder.HeaderRecorder` shows what arrives there."""
    gateway_redirect_status: int = 302
    """Status of the redirect (301, 302, 303, 307, 308)."""
    # -- gateway: the speech service behind it -----------------------------------------------------
    upstream_delay_s: float = 0.0
    """How long creating the upstream (OpenAI) session takes on a token-cache miss. Up to
    `upstream_timeout_s` the grant simply comes that much later; beyond it the gateway gives
    up after `upstream_timeout_s` with 503 `OpenAI session creation timed out`."""
    upstream_timeout_s: float = 30.0
    """The gateway's own timeout on the upstream call (30 s in the real one)."""
    upstream_fault: str | None = None
    """"failed": 503 `Failed to create OpenAI session: 500` (the service refused);
    "error": 500 `Failed to create Realtime session: ...` (anything else went wrong).
    Applies after authentication, on a token-cache miss, like the real failures."""
    # -- gateway: grants ---------------------------------------------------------------------------
    response_form: str = "current"
    """"current" ({auth: {token}}) or "early" ({api_key})."""
    gateway_model: str = MEASURED_MODEL
    """The model named in grants. The real gateway's default is a retired preview: a client
    that connects with it is refused by the realtime side (see `realtime_models`)."""
    gateway_default_voice: str = "nova"
    """Voice of a grant when the request names none (measured: "nova", which the realtime
    service lacks). A requested voice outside the gateway's list becomes "alloy"."""
    token_ttl_s: float = 600.0
    """Lifetime of ephemeral realtime tokens. 600 s is what the GA client-secret endpoint gives
    by default; the legacy sessions endpoint's tokens lived 60 s (with that, the token cache
    below never hits: set 60 to model it)."""
    token_cache: bool = True
    """Share ephemeral tokens per (model, voice) while more than 60 s of their life remain, like
    the real gateway: two kiosks asking close together get the same token, and a cache hit
    skips the upstream call (and `upstream_delay_s`). `Simulator.expire_tokens()` and
    `restart_gateway()` empty the cache."""
    # -- gateway: credentials ----------------------------------------------------------------------
    access_ttl_s: float = 300.0
    """Lifetime of login access tokens (5 minutes in the real gateway)."""
    refresh_ttl_s: float = 3600.0
    """Lifetime of login refresh tokens (60 minutes in the real gateway)."""
    refresh_rotation: bool = False
    """True: a refresh token works once (strict rotation). False (the real gateway): it is
    listed as revoked but never checked, so it keeps working until it expires."""
    api_key_check_s: float = 0.0
    """Time to check an X-API-Key (the real gateway runs bcrypt per request: about 0.35 s)."""
    bearer_check_s: float = 0.0
    """Time to check a bearer JWT (the real gateway: about 0.02 s)."""
    login_per_minute: int | None = 10
    """Logins allowed per minute from one client address (None: unlimited). Every kiosk here
    is 127.0.0.1, like kiosks behind one hospital NAT."""
    refresh_per_minute: int | None = 20
    """Refreshes allowed per minute from one client address (None: unlimited)."""
    # -- realtime ----------------------------------------------------------------------------------
    realtime_url: str | None = None
    """The realtime URL advertised in grants (None: the simulator's own). Point it at a
    `kiosk.sim.netfault.Relay` to put network faults between the kiosk and the service."""
    realtime_models: tuple[str, ...] = REALTIME_MODELS
    """Models the realtime service accepts in `?model=`. Any other gets an `error` event with
    code `model_not_found`, then close 4000 (assumed: the service's close for a bad request)."""
    drop_after_events: int | None = None
    """Drop the next connection's TCP link (no close frame) after it sent this many events.
    One-shot: reset to None when it fires."""
    drop_before_answer: bool = False
    """Drop the TCP link (no close frame) right after the next speech_stopped, before any
    answer: the question is lost with the link. One-shot: reset to False when it fires."""
    session_max_s: float | None = None
    """Send error session_expired then close 1001 this long after a connection opened."""
    beta_names: bool = False
    """Send beta event names (response.audio.delta ...) like an older compatible server."""
    answer_delay_s: float = 0.0
    """How long the service thinks after response.created before the first answer audio."""
    answer_s: float = 1.5
    """Length of each spoken answer, seconds."""
    voice_f0_hz: float = 220.0
    """Fundamental of the synthetic answer voice, Hz."""
    answer_voice: str = "synth"
    """synth: the synthetic voice at voice_f0_hz (tests find its fundamental); speech:
    answer_text spoken by espeak-ng at the same level (what an echo canceller meets)."""
    stream_speed: float = 4.0
    """Answer audio is streamed this many times faster than real time."""
    chunk_ms: int = 100
    """Audio per response.output_audio.delta, ms."""
    answer_text: str = "Of course. A nurse will bring you some water soon."
    """Transcript of each answer."""
    user_transcript: str = "Could I have some water, please?"
    """What the simulated transcription 'hears' in every turn."""
    call_tool_next: bool = False
    """Make the next answer a call of the first function tool the client declared in
    session.update (output_item.added, function_call_arguments.delta and .done, response.done)
    instead of speech. The spoken answer comes when the client sends the call's
    function_call_output and a response.create. One-shot: reset to False when it fires. With
    no tool declared, the answer is spoken as usual."""
    tool_arguments: str = '{"reason": "The patient says she feels dizzy."}'
    """The JSON arguments of that call."""
    vad_threshold_rms: float = 600.0
    """Energy threshold of the server VAD (int16 RMS)."""

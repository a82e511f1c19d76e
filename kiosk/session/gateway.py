"""Client of the hospital's voice gateway: POST /api/voice/realtime-session -> Grant.

The gateway hands out a short-lived *grant* for the realtime service (an ephemeral token, or
in its early form an API key). This module authenticates (see credentials.py), sends the
kiosk's voice preferences, keeps the conversation id so a reconnect restores context, and
classifies every failure as a GatewayError. How long to wait before trying again is the retry
policy's business (retry.py). Calls block (urllib): the conversation runs them on a worker
thread, never on its own loop.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kiosk import language as lang
from kiosk.session.credentials import Credential, LoginCredential, credential_from_settings
from kiosk.session.errors import GatewayError
from kiosk.session.http import post_json
from kiosk.session.transport import check_url, tls_context
from kiosk.settings import GatewaySettings, RealtimeSettings

__all__ = ["GatewayClient", "GatewayError", "Grant"]

log = logging.getLogger("kiosk.session.gateway")

SESSION_PATH = "/api/voice/realtime-session"


@dataclass(frozen=True)
class Grant:
    """One answer of the gateway: what a realtime link needs. `token` is a secret: it is left
    out of repr."""

    url: str
    model: str
    token: str = field(repr=False)
    expires_at: float  # unix seconds; the grant must be re-fetched after this
    session_id: str
    conversation_id: str | None
    voice_config: dict[str, Any]
    token_kind: str = "ephemeral_token"  # or "api_key" (the gateway's early response form)

    def expired(self, now: float | None = None, margin_s: float = 2.0) -> bool:
        """True when the grant is (about to be) past expires_at."""
        return (time.time() if now is None else now) >= self.expires_at - margin_s


def parse_grant(answer: dict[str, Any], realtime: RealtimeSettings,
                now: float | None = None) -> Grant:
    """Accept both response forms: early {api_key} and current {auth: {token}}."""
    auth = answer.get("auth")
    if isinstance(auth, dict) and isinstance(auth.get("token"), str) and auth["token"]:
        token, kind = auth["token"], str(auth.get("type") or "ephemeral_token")
        expires = auth.get("expires_at", answer.get("expires_at"))
    elif isinstance(answer.get("api_key"), str) and answer["api_key"]:
        token, kind, expires = answer["api_key"], "api_key", answer.get("expires_at")
    else:
        raise GatewayError("malformed", "gateway session answer has neither auth.token nor "
                                        "api_key; the gateway version may be unsupported")
    url = realtime.url or answer.get("url")
    model = realtime.model or answer.get("model")
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        raise GatewayError("malformed", "gateway session answer has no usable ws(s):// url; "
                                        "set realtime.url or fix the gateway")
    if not isinstance(model, str) or not model:
        raise GatewayError("malformed", "gateway session answer names no model; set "
                                        "realtime.model")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        # Missing expiry: assume the documented minute-long ephemeral token.
        expires = (time.time() if now is None else now) + 60.0
    voice_config = answer.get("voice_config")
    if voice_config is not None and not isinstance(voice_config, dict):
        raise GatewayError("malformed", "gateway session answer has a voice_config that is not "
                                        "an object")
    conversation_id = answer.get("conversation_id")
    return Grant(
        url=url, model=model, token=token, expires_at=float(expires),
        session_id=str(answer.get("session_id") or ""),
        conversation_id=conversation_id if isinstance(conversation_id, str) else None,
        voice_config=dict(voice_config or {}), token_kind=kind)


class GatewayClient:
    """Fetches grants from the gateway. Thread-safe (a slow request never holds the lock).

    After a rejected credential (401/403), *automatic* attempts (reconnects) fail fast without
    asking the gateway for `gateway.auth_retry_s`, unless the credential file changes, so a
    wrong key cannot lock the account; a patient's press always makes one real attempt. While
    the gateway's Retry-After lasts, attempts fail fast with the time still to wait.
    """

    def __init__(self, gateway: GatewaySettings, realtime: RealtimeSettings, *,
                 ctx: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 language: str | None = None) -> None:
        self.gateway = gateway
        self.realtime = realtime
        self.language = language or gateway.language  # kiosk.language (a BCP 47 tag)
        self._clock = clock
        self._lock = threading.Lock()
        self._ctx = ctx
        self._credential: Credential | None = None
        self._auth_hold: tuple[float, tuple[Any, ...], GatewayError] | None = None
        self._rate_hold: tuple[float, GatewayError] | None = None
        self.conversation_id: str | None = gateway.conversation_id
        self.last_grant: Grant | None = None
        self.requests = 0
        self.failures = 0

    # -- public ------------------------------------------------------------------------------

    def create_grant(self, conversation_id: str | None = None, *, continue_previous: bool = True,
                     automatic: bool = False) -> Grant:
        """POST the session request and return the grant; raises GatewayError.

        The conversation asked for is `conversation_id`, else gateway.conversation_id, else
        (when `continue_previous`) the one of the previous grant, so a reconnect restores the
        context. `automatic` marks a retry nobody asked for (it respects the auth hold)."""
        if conversation_id is None:
            conversation_id = (self.conversation_id if continue_previous
                               else self.gateway.conversation_id)
        try:
            grant = self._create(conversation_id, automatic)
        except GatewayError as exc:
            with self._lock:
                self.failures += 1
                if exc.kind == "auth" and exc.status is not None and self._credential:
                    self._auth_hold = (self._clock() + self.gateway.auth_retry_s,
                                       self._credential.fingerprint(), exc)
                elif exc.kind == "rate_limited" and exc.retry_after_s and exc.status:
                    self._rate_hold = (self._clock() + exc.retry_after_s, exc)
            raise
        with self._lock:
            self._auth_hold = self._rate_hold = None
            self.requests += 1
            self.last_grant = grant
            if grant.conversation_id:
                self.conversation_id = grant.conversation_id
            return grant

    @property
    def credential(self) -> Credential:
        """The configured credential (raises GatewayError("config") when there is none)."""
        with self._lock:
            if self._credential is None:
                self._credential = credential_from_settings(self.gateway, self._post)
            return self._credential

    # -- internals ---------------------------------------------------------------------------

    def _create(self, conversation_id: str | None, automatic: bool) -> Grant:
        if not self.gateway.url:
            raise GatewayError("config", "gateway.url is empty; set it to the VoiceAssist "
                                         "gateway")
        check_url(self.gateway.url, "gateway.url", self.gateway)
        credential = self.credential
        with self._lock:
            hold, rate = self._auth_hold, self._rate_hold
        if (automatic and hold is not None and self._clock() < hold[0]
                and credential.fingerprint() == hold[1]):
            raise GatewayError("auth", hold[2].message + " (automatic retries wait until the "
                                                         "credential file changes or "
                                                         f"{self.gateway.auth_retry_s:g} s "
                                                         "pass; a press tries at once)")
        if rate is not None and self._clock() < rate[0]:
            raise GatewayError("rate_limited", rate[1].message,
                               retry_after_s=rate[0] - self._clock())
        body = self._request_body(conversation_id)
        answer: dict[str, Any] = {}
        for attempt in (1, 2):
            headers = credential.headers()
            try:
                answer = self._post(SESSION_PATH, body, headers, credential.describe())
                break
            except GatewayError as exc:
                # A login token may be revoked server-side: one fresh login before giving up.
                if (exc.kind != "auth" or attempt == 2
                        or not isinstance(credential, LoginCredential)):
                    raise
                credential.rejected()
        grant = parse_grant(answer, self.realtime, now=time.time())
        log.info("gateway granted realtime session %s (model %s, %s, expires in %.0f s)",
                 grant.session_id or "?", grant.model, grant.token_kind,
                 grant.expires_at - time.time())
        return grant

    def _request_body(self, conversation_id: str | None) -> dict[str, Any]:
        g = self.gateway
        body: dict[str, Any] = {}
        if conversation_id:
            body["conversation_id"] = conversation_id
        for name in ("voice", "vad_sensitivity", "silence_duration_ms", "adaptive_vad"):
            value = getattr(g, name)
            if value is not None:
                body[name] = value
        if self.language:
            # The gateway takes two-letter codes ("en", "es"): pt-BR is asked for as pt.
            try:
                body["language"] = lang.parse(self.language).iso639_1
            except ValueError:
                body["language"] = self.language
        return body

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str],
              credential: str) -> dict[str, Any]:
        if self._ctx is None:
            self._ctx = tls_context(self.gateway)
        url = self.gateway.url.rstrip("/") + path
        return post_json(url, body, headers, timeout_s=self.gateway.timeout_s, ctx=self._ctx,
                         credential=credential)

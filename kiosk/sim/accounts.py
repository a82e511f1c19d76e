"""The simulated gateway's memory: users, API keys, tokens it handed out, the ephemeral-token
cache, rate-limit windows and adaptive-VAD state. Thread-safe (one lock).

Mirrors the real gateway where a kiosk can tell the difference: refresh tokens keep working
after a refresh unless strict rotation is asked for, ephemeral tokens are shared per
(model, voice), and a restart forgets what the real one keeps only in memory.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from typing import Any

CACHE_MARGIN_S = 60.0
"""The gateway reuses a cached ephemeral token only while more than this much life remains."""
RATE_WINDOW_S = 60.0


class Accounts:
    """Users, API keys and the tokens the gateway handed out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: dict[str, tuple[str, bool]] = {}  # email -> (password, requires_2fa)
        self.api_keys: set[str] = set()
        self.access: dict[str, float] = {}  # access token -> expires (monotonic)
        self.refresh: dict[str, float] = {}  # live refresh token -> expires (monotonic)
        self.revoked_refresh: set[str] = set()  # written on refresh, read only when strict
        self.realtime_tokens: dict[str, float] = {}  # ephemeral token / key -> expires (unix)
        self.token_cache: dict[tuple[str, str], str] = {}  # (model, voice) -> token
        self.sessions_since_restart = 0
        self._windows: dict[str, deque[float]] = {}

    # -- login tokens ------------------------------------------------------------------------

    def issue_pair(self, access_ttl_s: float, refresh_ttl_s: float) -> dict[str, Any]:
        """A login answer: a new access and refresh token."""
        access, refresh = "eyJsim." + secrets.token_urlsafe(24), "rt_" + secrets.token_urlsafe(24)
        now = time.monotonic()
        with self.lock:
            self.access[access] = now + access_ttl_s
            self.refresh[refresh] = now + refresh_ttl_s
        return {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
                "expires_in": int(access_ttl_s) if access_ttl_s >= 1 else access_ttl_s,
                "refresh_expires_in": int(refresh_ttl_s), "role": "user"}

    def access_ok(self, token: str) -> bool:
        with self.lock:
            return self.access.get(token, 0.0) > time.monotonic()

    def use_refresh(self, token: str, *, strict: bool) -> bool:
        """Whether `token` may be refreshed. It is then listed as revoked; only with `strict`
        (rotation) does that list stop it from working again, as the real gateway meant to."""
        with self.lock:
            if self.refresh.get(token, 0.0) <= time.monotonic():
                return False
            if strict and token in self.revoked_refresh:
                return False
            self.revoked_refresh.add(token)
            if strict:
                del self.refresh[token]
            return True

    # -- ephemeral realtime tokens -----------------------------------------------------------

    def ephemeral_token(self, model: str, voice: str, ttl_s: float, *,
                        share: bool) -> tuple[str, float, bool]:
        """(token, expires unix, from_cache). With `share`, a token already handed out for the
        same model and voice is reused while more than CACHE_MARGIN_S of it remain."""
        now = time.time()
        with self.lock:
            if share:
                cached = self.token_cache.get((model, voice))
                expires = self.realtime_tokens.get(cached or "", 0.0)
                if cached and expires - now > CACHE_MARGIN_S:
                    return cached, expires, True
            return self._new_token("ek_", now + ttl_s), now + ttl_s, False

    def cache_token(self, model: str, voice: str, token: str) -> None:
        """Remember a freshly created token for others asking for the same model and voice
        (after the upstream call succeeded, as the real gateway does)."""
        with self.lock:
            self.token_cache[(model, voice)] = token

    def service_key(self, ttl_s: float) -> tuple[str, float]:
        """The early form's realtime key (the gateway's own long-lived service key)."""
        expires = time.time() + ttl_s
        with self.lock:
            return self._new_token("sk-sim-", expires), expires

    def _new_token(self, prefix: str, expires: float) -> str:
        token = prefix + secrets.token_urlsafe(24)
        self.realtime_tokens[token] = expires
        return token

    def forget_token(self, token: str) -> None:
        """An upstream call that failed: its token never reached anyone."""
        with self.lock:
            self.realtime_tokens.pop(token, None)

    def realtime_token_ok(self, token: str) -> bool:
        with self.lock:
            return self.realtime_tokens.get(token, 0.0) > time.time()

    def expire_tokens(self) -> None:
        """Every access and realtime token handed out so far stops working now."""
        with self.lock:
            self.access.clear()
            self.realtime_tokens.clear()
            self.token_cache.clear()

    # -- rate limits, adaptive VAD, restarts ------------------------------------------------

    def rate_limited(self, bucket: str, per_minute: int | None) -> bool:
        """Count one request in `bucket`; True when it is over `per_minute` in the last 60 s."""
        if per_minute is None:
            return False
        now = time.monotonic()
        with self.lock:
            window = self._windows.setdefault(bucket, deque())
            while window and now - window[0] >= RATE_WINDOW_S:
                window.popleft()
            if len(window) >= per_minute:
                return True
            window.append(now)
            return False

    def next_session_number(self) -> int:
        """1 for the first session granted since the (simulated) gateway started."""
        with self.lock:
            self.sessions_since_restart += 1
            return self.sessions_since_restart

    def restart(self) -> None:
        """Forget what the real gateway keeps only in its process memory: the ephemeral-token
        cache, rate-limit windows (assumed in memory) and adaptive-VAD profiles. Users, API
        keys and the tokens themselves (JWTs, OpenAI's ephemeral keys) survive."""
        with self.lock:
            self.token_cache.clear()
            self._windows.clear()
            self.sessions_since_restart = 0

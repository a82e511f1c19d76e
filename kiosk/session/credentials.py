"""Gateway credentials: an API key file, a bearer token file, or e-mail + password login.

Secrets live in files (paths may use ${CREDENTIALS_DIRECTORY}, set by systemd's
LoadCredential=) and are read when needed, so a rotated file takes effect without a restart.
Nothing here ever logs a secret.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from kiosk.session.errors import GatewayError
from kiosk.settings import GatewaySettings

log = logging.getLogger("kiosk.session.credentials")

Poster = Callable[[str, dict[str, Any], dict[str, str], str], dict[str, Any]]
"""post(path, body, headers, credential_description) -> JSON object, raising GatewayError."""

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def resolve_path(path: str, setting: str) -> Path:
    """Expand ${VAR} (typically ${CREDENTIALS_DIRECTORY}) in a credential path."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        value = os.environ.get(name)
        if value is None:
            raise GatewayError("config", f"{setting} uses ${{{name}}} but it is not set; run "
                                         "under systemd with LoadCredential= or use a plain "
                                         "path")
        return value
    return Path(_VAR.sub(sub, path))


def read_secret(path: str, setting: str) -> str:
    """The stripped content of a secret file; GatewayError("config") says which file is wrong."""
    resolved = resolve_path(path, setting)
    try:
        text = resolved.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise GatewayError("config", f"{setting} {resolved} does not exist; create it (mode "
                                     "0600) or fix the path") from None
    except PermissionError:
        raise GatewayError("config", f"{setting} {resolved} is not readable by the kiosk user; "
                                     "fix its owner or mode") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayError("config", f"{setting} {resolved} cannot be read "
                                     f"({type(exc).__name__})") from None
    if not text:
        raise GatewayError("config", f"{setting} {resolved} is empty; put the secret in it")
    return text


def _fingerprint(path: str | None, setting: str) -> tuple[Any, ...]:
    """Identifies the file's current content without keeping it (a digest, never logged):
    mtime alone can miss a quick rewrite with a key of the same length."""
    if not path:
        return ()
    try:
        data = resolve_path(path, setting).read_bytes()
    except (OSError, GatewayError):
        return (path, None)
    return (path, hashlib.sha256(data).hexdigest())


class Credential(Protocol):
    def describe(self) -> str:
        """Which credential this is, for error messages (never the secret)."""

    def headers(self) -> dict[str, str]:
        """Authentication headers for one gateway request (may log in or refresh)."""

    def rejected(self) -> None:
        """The gateway answered 401/403 with these headers: forget cached tokens."""

    def fingerprint(self) -> tuple[Any, ...]:
        """Changes when the underlying files change (so a fixed file is retried at once)."""


class ApiKeyCredential:
    """A long-lived `X-API-Key` (va_k_...) from a file: the natural kiosk credential."""

    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> str:
        return f"the API key in gateway.api_key_file ({self.path})"

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": read_secret(self.path, "gateway.api_key_file")}

    def rejected(self) -> None:
        pass

    def fingerprint(self) -> tuple[Any, ...]:
        return _fingerprint(self.path, "gateway.api_key_file")


class TokenFileCredential:
    """A bearer JWT from a file, re-read on every request so an outside rotation just works."""

    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> str:
        return f"the bearer token in gateway.token_file ({self.path})"

    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + read_secret(self.path, "gateway.token_file")}

    def rejected(self) -> None:
        pass

    def fingerprint(self) -> tuple[Any, ...]:
        return _fingerprint(self.path, "gateway.token_file")


class LoginCredential:
    """E-mail + password: logs in, refreshes with refresh-token rotation, logs in afresh when
    the refresh is refused. Access tokens are renewed a little before they expire."""

    MARGIN_S = 20.0  # renew this long before expiry so a request never carries a dying token

    def __init__(self, email: str, password_file: str, post: Poster,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.email = email
        self.password_file = password_file
        self._post = post
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._access_until = 0.0
        self._refresh: str | None = None
        self._refresh_until = 0.0
        self.logins = 0
        self.refreshes = 0

    def describe(self) -> str:
        return (f"the login of gateway.email {self.email} with gateway.password_file "
                f"({self.password_file})")

    def fingerprint(self) -> tuple[Any, ...]:
        return (self.email, *_fingerprint(self.password_file, "gateway.password_file"))

    def rejected(self) -> None:
        with self._lock:
            self._access = None

    def headers(self) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            if self._access is None or now >= self._access_until - self.MARGIN_S:
                self._renew(now)
            assert self._access is not None
            return {"Authorization": "Bearer " + self._access}

    def _renew(self, now: float) -> None:
        if self._refresh and now < self._refresh_until - self.MARGIN_S:
            try:
                answer = self._post("/api/auth/refresh", {"refresh_token": self._refresh}, {},
                                    "the refresh token from the last gateway login")
                self._store(answer, now)
                self.refreshes += 1
                log.debug("gateway access token refreshed")
                return
            except GatewayError as exc:
                if exc.kind not in ("auth", "malformed"):
                    raise
                log.info("gateway refused the refresh token (%s); logging in again", exc.kind)
        self._refresh = None
        password = read_secret(self.password_file, "gateway.password_file")
        answer = self._post("/api/auth/login", {"email": self.email, "password": password}, {},
                            self.describe())
        if answer.get("requires_2fa"):
            raise GatewayError("config", f"gateway account {self.email} has two-factor login "
                                         "on, which a kiosk cannot do; use an API key "
                                         "(gateway.api_key_file) instead")
        self._store(answer, now)
        self.logins += 1
        log.info("logged in to the gateway as %s", self.email)

    def _store(self, answer: dict[str, Any], now: float) -> None:
        access, refresh = answer.get("access_token"), answer.get("refresh_token")
        if not isinstance(access, str) or not access:
            raise GatewayError("malformed", "gateway login answer has no access_token")
        self._access = access
        self._access_until = now + _seconds(answer.get("expires_in"), 300.0)
        if isinstance(refresh, str) and refresh:
            self._refresh = refresh
            self._refresh_until = now + _seconds(answer.get("refresh_expires_in"), 3600.0)


def _seconds(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and value > 0 else default


def credential_from_settings(gateway: GatewaySettings, post: Poster) -> Credential:
    """Pick the configured credential: api_key_file, else token_file, else email login."""
    if gateway.api_key_file:
        return ApiKeyCredential(gateway.api_key_file)
    if gateway.token_file:
        return TokenFileCredential(gateway.token_file)
    if gateway.email:
        if not gateway.password_file:
            raise GatewayError("config", "gateway.email is set but gateway.password_file is "
                                         "not; add the password file or use "
                                         "gateway.api_key_file")
        return LoginCredential(gateway.email, gateway.password_file, post)
    raise GatewayError("config", "no gateway credential configured; set gateway.api_key_file "
                                 "(recommended), gateway.token_file, or gateway.email with "
                                 "gateway.password_file")

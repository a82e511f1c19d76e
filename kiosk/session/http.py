"""JSON over HTTPS for the gateway: urllib with the shared TLS context, no redirects, and
error classes.

Kept apart from the gateway logic so login, refresh and session requests share one place where
HTTP status codes become GatewayError kinds. Redirects are never followed: urllib would send
the `X-API-Key` or `Authorization` header to whatever host a 30x names.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kiosk.session.errors import GatewayError
from kiosk.session.transport import is_loopback

_MAX_BODY = 1024 * 1024  # a session grant is a few KiB; anything near this is not our gateway


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every 30x into an HTTPError instead of following it with our credentials."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> None:
        return None


def _opener(url: str, ctx: ssl.SSLContext) -> urllib.request.OpenerDirector:
    handlers: list[Any] = [urllib.request.HTTPSHandler(context=ctx), _NoRedirects()]
    if is_loopback(urllib.parse.urlsplit(url).hostname):
        # A loopback gateway (the simulator) must never go through a site proxy.
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(raw: bytes) -> str:
    """The gateway's explanation in an error body, shortened: FastAPI's `detail`, or the rate
    limiter's `error` ({"error": "Rate limit exceeded: 10 per 1 minute"}, no `detail`)."""
    try:
        body = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    for key in ("detail", "error"):
        if isinstance(body.get(key), str):
            return str(body[key])[:200]
    return ""


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], *, timeout_s: float,
              ctx: ssl.SSLContext, credential: str) -> dict[str, Any]:
    """POST `body` as JSON and return the decoded JSON object.

    `credential` names the credential in use (e.g. "gateway.api_key_file /etc/...") so an auth
    failure can say which one to fix. Raises GatewayError for every failure.
    """
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json",
        "User-Agent": "voice-kiosk", **headers})
    path = urllib.parse.urlsplit(url).path
    try:
        with _opener(url, ctx).open(req, timeout=timeout_s) as resp:
            raw = resp.read(_MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        raw = exc.read(4096) if exc.fp else b""
        if 300 <= exc.code < 400:
            raise _redirect_error(exc.code, exc.headers.get("Location"), path) from None
        raise classify_status(exc.code, _detail(raw), exc.headers.get("Retry-After"),
                              path, credential) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise GatewayError("network", f"gateway did not answer {path} within "
                                          f"{timeout_s:g} s; check the network or raise "
                                          "gateway.timeout_s") from None
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise GatewayError("network", f"TLS certificate of {url} not trusted "
                                          f"({reason.verify_message}); install the hospital CA "
                                          "as gateway.ca_file") from None
        raise GatewayError("network", f"cannot reach the gateway at {url} ({reason}); check "
                                      "the network and gateway.url") from None
    except TimeoutError:
        raise GatewayError("network", f"gateway did not answer {path} within {timeout_s:g} s; "
                                      "check the network or raise gateway.timeout_s") from None
    except (OSError, ValueError) as exc:
        raise GatewayError("network", f"request to {url} failed ({exc}); check gateway.url "
                                      "and the network") from None
    if len(raw) > _MAX_BODY:
        raise GatewayError("malformed", f"gateway answer to {path} is too large; is gateway.url "
                                        "the VoiceAssist gateway?")
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise GatewayError("malformed", f"gateway answer to {path} is not JSON; is gateway.url "
                                        "the VoiceAssist gateway (not a proxy login page)?"
                           ) from None
    if not isinstance(parsed, dict):
        raise GatewayError("malformed", f"gateway answer to {path} is not a JSON object")
    return parsed


def _redirect_error(status: int, location: str | None, path: str) -> GatewayError:
    target = urllib.parse.urlsplit(location or "")
    where = f"{target.scheme}://{target.netloc}" if target.netloc else (location or "?")
    return GatewayError("config", f"gateway answered {path} with a redirect ({status}) to "
                                  f"{where}; not followed, so the credential was not sent "
                                  "there. Set gateway.url to the address the gateway really "
                                  "has", status=status)


def classify_status(status: int, detail: str, retry_after: str | None, path: str,
                    credential: str) -> GatewayError:
    """Turn an HTTP error status into a GatewayError with advice for IT staff."""
    said = f": {detail}" if detail else ""
    if status in (401, 403):
        return GatewayError("auth", f"gateway rejected {credential} on {path} ({status}{said}); "
                                    "replace the credential (see README, gateway credentials)",
                            status=status)
    if status == 429:
        wait = parse_retry_after(retry_after)
        said429 = f": {detail}" if detail else ""
        hint = f"; the gateway asks to wait {wait:g} s" if wait is not None else ""
        return GatewayError("rate_limited", f"gateway rate limit hit on {path} "
                                            f"(429{said429}){hint}",
                            retry_after_s=wait, status=status)
    if status in (500, 502, 503, 504):
        return GatewayError("unavailable", f"gateway cannot create a session ({status}{said}); "
                                           "check that the gateway's realtime service is "
                                           "enabled and configured", status=status)
    if status == 404:
        return GatewayError("config", f"gateway has no {path} (404); check gateway.url points "
                                      "at the VoiceAssist api-gateway", status=status)
    return GatewayError("unavailable", f"gateway answered {status} on {path}{said}",
                        status=status)

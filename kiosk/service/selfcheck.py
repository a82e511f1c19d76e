"""Start-up self-check: can this kiosk work at all? Logged and shown in `systemctl status`.

Three checks, each one line for IT staff:
- devices: microphone and speaker open (asked of the audio layer through a callable);
- gateway: a TCP connection to gateway.url's host and port succeeds (fails when it is empty;
  "simulator" when the built-in simulator was asked for);
- gpio: the button and light pins opened (asked of the GPIO layer through a callable);
- clock: not before the package's build year, since a Pi without a real-time clock boots
  in the past until NTP syncs, and then TLS certificates and token expiry checks fail.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from kiosk.settings import SIMULATOR_URL, Settings

# Nothing built in 2025 can be running earlier; an earlier clock is simply wrong.
EARLIEST_PLAUSIBLE = datetime(2025, 1, 1, tzinfo=UTC)
GATEWAY_TIMEOUT_S = 3.0
DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


@dataclass(frozen=True)
class SelfCheck:
    ok: bool
    lines: list[str] = field(default_factory=list)  # "ok   gateway: ..." / "FAIL clock: ..."
    summary: str = ""  # one line for STATUS=, e.g. "self-check failed: gateway"


def _line(ok: bool, name: str, detail: str) -> str:
    return f"{'ok  ' if ok else 'FAIL'} {name}: {detail}"


def check_devices(probe: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    """Run a part's probe (audio devices, GPIO): (ok, one line for IT staff)."""
    try:
        return probe()
    except Exception as exc:  # a crashing probe is a failed check, not a crashed daemon
        return False, f"probe raised {type(exc).__name__}: {exc}"


def check_gateway(url: str, timeout_s: float = GATEWAY_TIMEOUT_S) -> tuple[bool, str]:
    if not url:
        return False, "gateway.url is empty: set it in the configuration"
    if url == SIMULATOR_URL:
        return True, "built-in simulator (gateway.url: simulator): a demo, not an assistant"
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return False, f"cannot parse a host from gateway.url {parts.scheme}://..."
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
    except ValueError:
        return False, "bad port in gateway.url"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return False, f"{host}:{port} unreachable ({reason})"
    return True, f"{host}:{port} reachable"


def check_clock(now: Callable[[], float] = time.time) -> tuple[bool, str]:
    current = datetime.fromtimestamp(now(), tz=UTC)
    stamp = current.strftime("%Y-%m-%d %H:%M UTC")
    if current < EARLIEST_PLAUSIBLE:
        return False, (f"{stamp} is before {EARLIEST_PLAUSIBLE:%Y-%m-%d}: "
                       "no time sync yet? TLS and token expiry will fail")
    return True, stamp


def run_selfcheck(settings: Settings, audio_ok: Callable[[], tuple[bool, str]], *,
                  gpio_ok: Callable[[], tuple[bool, str]] | None = None,
                  now: Callable[[], float] = time.time,
                  timeout_s: float = GATEWAY_TIMEOUT_S) -> SelfCheck:
    """Run all checks (a few seconds at most: the gateway connect is bounded by
    timeout_s, itself capped by gateway.timeout_s)."""
    results = {
        "devices": check_devices(audio_ok),
        **({"gpio": check_devices(gpio_ok)} if gpio_ok is not None else {}),
        "gateway": check_gateway(settings.gateway.url,
                                 min(timeout_s, settings.gateway.timeout_s)),
        "clock": check_clock(now),
    }
    lines = [_line(ok, name, detail) for name, (ok, detail) in results.items()]
    failed = [name for name, (ok, _) in results.items() if not ok]
    summary = f"self-check failed: {', '.join(failed)}" if failed else "self-check ok"
    return SelfCheck(ok=not failed, lines=lines, summary=summary)

"""Tell systemd what the daemon is doing (sd_notify(3)), so `systemctl status` shows it.

Every method is a no-op returning False when NOTIFY_SOCKET is unset (run from a shell, or
under a unit that is not Type=notify), so callers never need to check.
"""

from __future__ import annotations

import os
import time

import systemd.daemon as daemon

from kiosk.states import StateChange

# systemd shows STATUS= in one line of `systemctl status`; longer text only gets cut there.
STATUS_MAX_CHARS = 200


def _one_line(text: str) -> str:
    """A newline would start a new KEY=value assignment in the datagram: flatten it."""
    flat = " ".join(text.split())
    return flat[:STATUS_MAX_CHARS]


class SystemdNotifier:
    """Sends sd_notify messages for one kiosk.

    >>> notifier = SystemdNotifier(kiosk_id="ward3-bed12")
    >>> notifier.ready("idle (ward3-bed12): self-check ok")   # once, after start-up
    >>> notifier.on_state_change(change)                      # as a controller observer

    kiosk_id: the name from `kiosk.id`, repeated in STATUS= so a screenful of
        `systemctl status` output from many kiosks says which is which.
    """

    def __init__(self, kiosk_id: str = "kiosk") -> None:
        self.kiosk_id = kiosk_id

    @property
    def enabled(self) -> bool:
        """True when started by systemd with a notification socket (Type=notify)."""
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def _send(self, *assignments: str) -> bool:
        if not self.enabled:
            return False
        return bool(daemon.notify("\n".join(assignments)))

    def status_text(self, state: str, detail: str = "") -> str:
        """The STATUS= line: state word first, so scripts can `cut -d' ' -f1`."""
        text = f"{state} ({self.kiosk_id})"
        if detail:
            text += f": {detail}"
        return _one_line(text)

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete: `systemctl start/reload` returns now."""
        lines = ["READY=1"]
        if status:
            lines.append(f"STATUS={_one_line(status)}")
        return self._send(*lines)

    def reloading(self, status: str | None = None) -> bool:
        """A reload (SIGHUP) started; call ready() when the new settings are in effect.

        MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match this message to the
        reload it asked for; older systemd ignores the field.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        lines = ["RELOADING=1", f"MONOTONIC_USEC={usec}"]
        lines.append(f"STATUS={_one_line(status or self.status_text('reloading'))}")
        return self._send(*lines)

    def stopping(self, status: str | None = None) -> bool:
        """Shut-down started (SIGTERM): systemd shows `deactivating` until we exit."""
        text = status or self.status_text("stopping", "shutting down")
        return self._send("STOPPING=1", f"STATUS={_one_line(text)}")

    def status(self, text: str) -> bool:
        """Free-form STATUS= text (kept to one line)."""
        return self._send(f"STATUS={_one_line(text)}")

    def on_state_change(self, change: StateChange) -> None:
        """Controller observer: STATUS=<state> (<kiosk id>): <detail>."""
        detail = change.detail
        if change.error_kind and not detail.startswith(change.error_kind):
            detail = f"{change.error_kind}: {detail}" if detail else change.error_kind
        self.status(self.status_text(str(change.new), detail))

    def watchdog_ping(self) -> bool:
        """WATCHDOG=1: proof of life; without it for WatchdogSec= systemd restarts us."""
        return self._send("WATCHDOG=1")

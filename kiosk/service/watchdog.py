"""systemd watchdog: ping WATCHDOG=1 at half of WatchdogSec=, but only while healthy.

A stuck controller loop or dead audio stream then stops the pings, and systemd restarts
the service (Restart=on-failure) instead of leaving a silent kiosk at a patient's bed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence

from kiosk.service.notify import SystemdNotifier

log = logging.getLogger(__name__)


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None when systemd wants none.

    WATCHDOG_PID, when set, names the process systemd expects pings from; a child that
    inherited the environment must stay quiet.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    return usec / 2 / 1_000_000


def _name(check: Callable[[], bool]) -> str:
    return getattr(check, "__name__", None) or repr(check)


class Watchdog:
    """A daemon thread that pings systemd while every check passes.

    >>> dog = Watchdog(notifier, [controller_alive, audio_alive])
    >>> dog.start()     # after READY=1
    >>> dog.stop()      # on shut-down

    checks: callables returning True when healthy; one returning False or raising stops
        the pings (logged once per failure, with the check's name).
    environ: where WATCHDOG_USEC / WATCHDOG_PID are read (default: os.environ).
    """

    def __init__(self, notifier: SystemdNotifier, checks: Sequence[Callable[[], bool]],
                 environ: Mapping[str, str] | None = None) -> None:
        self.notifier = notifier
        self.checks = list(checks)
        self.interval_s = watchdog_interval_s(environ)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None

    def start(self) -> None:
        """Start pinging (no-op without WATCHDOG_USEC, or when already running)."""
        if not self.enabled or (self._thread and self._thread.is_alive()):
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()
        log.debug("watchdog: pinging every %.3f s", self.interval_s)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout_s)
            self._thread = None

    def healthy(self) -> bool:
        """Run every check; log the first failing one (once until it recovers)."""
        for check in self.checks:
            try:
                ok = bool(check())
            except Exception:
                log.exception("watchdog: check %s raised", _name(check))
                ok = False
            if not ok:
                if self._failing != _name(check):
                    self._failing = _name(check)
                    log.error("watchdog: check %s failed; withholding pings so systemd "
                              "restarts the service", self._failing,
                              extra={"error_kind": "watchdog"})
                return False
        if self._failing:
            log.warning("watchdog: check %s recovered", self._failing)
            self._failing = None
        return True

    def _run(self) -> None:
        assert self.interval_s is not None
        # Ping at once: the first interval starts when systemd saw READY=1, not now.
        while True:
            if self.healthy():
                self.notifier.watchdog_ping()
            if self._stopping.wait(self.interval_s):
                return

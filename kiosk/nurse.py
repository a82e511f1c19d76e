"""The nurse request: the relay, the latch and its reset, owned by one thread.

A request comes from the assistive switch (role ``nurse_call``, on a gpiozero thread) or
from the assistant (the model's ``request_nurse`` tool call, on the conversation's loop).
Either closes the relay of `gpio.nurse_call` at once and *latches* the request: the light
adds its nurse pattern on top of the state, a distinct cue plays, and it stays so until it
is reset, by a long press outside a visit, the staff's reset input (`reset_pin`) or the
reset time (`reset_after_s`). With ``hold_s`` above 0 the contact itself opens again after
that long (a press of the call button); the latch, and the light, stay until the reset.

This is deliberately not a state of the controller. The six states are the conversation's;
a nurse request is independent of them and must not depend on anything the conversation
depends on: the network, the gateway, the speech service, or the controller's queue (which
drops events when full). It has its own thread and its own unbounded queue of rare human
actions; callers only put and return. Observers (`on_nurse_call`) are told each change in
order, from that thread, and must return at once (the light hands it to its own thread).

Under systemd (``StateDirectory=``) a latched request is written to
``$STATE_DIRECTORY/nurse-call-latched`` and restored at the next start: neither a reload
nor a restart cancels it. The file holds when and how it was made, never a reason.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiosk.files import write_atomically
from kiosk.hw.relay import NurseCallRelay, RelayMismatch
from kiosk.settings import NurseCallSettings

log = logging.getLogger("kiosk.nurse")

STATE_FILE = "nurse-call-latched"
REQUEST_SOURCES = ("switch", "assistant")  # the metric's label values


@dataclass(frozen=True)
class NurseCallChange:
    """What observers receive: one per change, in order."""

    active: bool  # a request is latched (until reset)
    contact_closed: bool  # the relay's contact, as read back from its pin
    source: str  # switch, assistant, long press, reset input, timer, restored, start
    new_request: bool = False  # a request was made just now (the cue plays)


class NurseCallObserver(Protocol):
    def on_nurse_call(self, change: NurseCallChange) -> None: ...


OpenRelay = Callable[[bool], NurseCallRelay]
"""Opens the relay with the contact closed or open (raises when its pin cannot be used)."""


class NurseCall:
    """The nurse request's one owner.

    >>> nurse = NurseCall(settings.gpio.nurse_call, open_relay, state_dir="/var/lib/...")
    >>> nurse.add_observer(light); nurse.start()
    >>> nurse.request("switch")          # any thread; returns at once
    >>> nurse.reset("long press")
    >>> nurse.close()

    :param settings: `gpio.nurse_call`.
    :param open_relay: opens the relay (None: no relay could be opened; requests are then
        shown but reach no nurse, and `request` says so).
    :param state_dir: where a latched request is kept across restarts (None: not kept).
    :param on_problem: told (from the owner's thread) when the relay fails or reads back
        wrong, with a message for IT staff.
    """

    def __init__(self, settings: NurseCallSettings, open_relay: OpenRelay | None,
                 state_dir: str | None = None,
                 on_problem: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._open_relay = open_relay
        self._relay: NurseCallRelay | None = None
        self._state_file = Path(state_dir, STATE_FILE) if state_dir else None
        self._on_problem = on_problem
        self._clock = clock
        self._observers: list[NurseCallObserver] = []
        self._queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Written only by the owner's thread; read by others as single references.
        self.active = False
        self.contact_closed = False
        self.relay_ok = False
        self._open_at: float | None = None  # hold_s: when the contact opens again
        self._reset_at: float | None = None  # reset_after_s

    def add_observer(self, observer: NurseCallObserver) -> None:
        self._observers.append(observer)

    # -- any thread --------------------------------------------------------------------------

    def request(self, source: str) -> bool:
        """Ask for a nurse (`source`: switch or assistant). Returns at once; True when a
        working relay will pass it on (False: shown on the kiosk only)."""
        self._queue.put(("request", source))
        return self.relay_ok

    def reset(self, by: str) -> None:
        """End a latched request (`by`: long press, reset input, timer). No-op when none."""
        self._queue.put(("reset", by))

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the relay (restoring a request latched before a restart) and start the owner.
        A relay that cannot be opened or reads back wrong is reported through `on_problem`;
        the rest keeps working."""
        since = self._restored_since()
        latched = since is not None
        if since is not None:
            self.active = True
            if self.settings.reset_after_s:
                left_s = since + self.settings.reset_after_s - time.time()
                self._reset_at = self._clock() + max(0.0, left_s)
        keep_closed = latched and self.settings.hold_s == 0
        if self._open_relay is not None:
            try:
                self._relay = self._open_relay(keep_closed)
            except Exception as exc:  # noqa: BLE001 - a pin in use, no driver
                self._problem(f"nurse call relay unavailable: {exc}")
            else:
                self.contact_closed = self._relay.closed
                self.relay_ok = True
                try:
                    self._relay.check(keep_closed)  # the read-back at start
                except RelayMismatch as exc:
                    self._problem(str(exc))
        if since is not None:
            log.warning("nurse call: a request latched before this reload or restart is still "
                        "active (since %s); reset it with a long press%s",
                        time.strftime("%H:%M", time.localtime(since)),
                        " or the reset input" if self.settings.reset_pin is not None else "")
        self._notify("restored" if latched else "start")
        self._thread = threading.Thread(target=self._run, name="nurse-call", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the owner and release the relay (its contact opens; a latched request stays
        in the state file for the next start)."""
        if self._thread is not None:
            self._queue.put(("stop", ""))
            self._thread.join(2.0)
            self._thread = None
        relay, self._relay = self._relay, None
        self.relay_ok = False
        if relay is not None:
            relay.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the owner's thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            deadlines = [d for d in (self._open_at, self._reset_at) if d is not None]
            timeout = max(0.0, min(deadlines) - self._clock()) if deadlines else None
            try:
                what, arg = self._queue.get(timeout=timeout)
            except queue.Empty:
                what, arg = "tick", ""
            if what == "stop":
                return
            try:
                self._apply(what, arg)
            except Exception:  # the owner must outlive a bug in an observer or a driver
                log.exception("nurse call: internal error applying %s", what)

    def _apply(self, what: str, arg: str) -> None:
        now = self._clock()
        if what == "request":
            self._request(arg)
        elif what == "reset":
            self._reset(arg)
        if self._open_at is not None and now >= self._open_at:
            self._open_at = None
            self._set_contact(False)
            log.info("nurse call: contact opened after gpio.nurse_call.hold_s (%g s); the "
                     "request stays shown until reset", self.settings.hold_s)
            self._notify("hold elapsed")
        if self._reset_at is not None and now >= self._reset_at:
            self._reset("timer")

    def _request(self, source: str) -> None:
        self._set_contact(True)
        if self.settings.hold_s > 0:
            self._open_at = self._clock() + self.settings.hold_s
        again = self.active
        if not again:
            self.active = True
            self._remember(source)
            if self.settings.reset_after_s > 0:
                self._reset_at = self._clock() + self.settings.reset_after_s
        sent = ("relay closed" if self.contact_closed else
                "NOT passed on: the relay is not working, see the journal")
        log.warning("nurse call: requested by the %s%s; %s", source,
                    " again" if again else "", sent)
        self._notify(source, new_request=True)

    def _reset(self, by: str) -> None:
        if not self.active:
            log.debug("nurse call: %s ignored, no request active", by)
            return
        self.active = False
        self._open_at = self._reset_at = None
        self._set_contact(False)
        self._forget()
        log.info("nurse call: reset by %s", by)
        self._notify(by)

    def _set_contact(self, closed: bool) -> None:
        relay = self._relay
        if relay is None:
            return
        try:
            if closed:
                relay.close_contact()
            else:
                relay.open_contact()
        except RelayMismatch as exc:
            self._problem(str(exc))
        except Exception as exc:  # noqa: BLE001 - the driver failed (a closed factory...)
            self._problem(f"nurse call relay failed: {type(exc).__name__}: {exc}")
        try:
            self.contact_closed = relay.closed
        except Exception:  # noqa: BLE001 - the pin cannot even be read
            self.contact_closed = False
        self.relay_ok = self.contact_closed == closed

    def _problem(self, message: str) -> None:
        self.relay_ok = False
        log.error("%s", message, extra={"error_kind": "gpio"})
        if self._on_problem is not None:
            self._on_problem(message)

    def _notify(self, source: str, new_request: bool = False) -> None:
        change = NurseCallChange(self.active, self.contact_closed, source, new_request)
        for observer in list(self._observers):
            try:
                observer.on_nurse_call(change)
            except Exception:  # a broken light must not stop the request
                log.exception("nurse call observer %s failed", type(observer).__name__)

    # -- the latch across restarts -----------------------------------------------------------

    def _restored_since(self) -> float | None:
        path = self._state_file
        if path is None or not path.exists():
            return None
        try:
            return float(json.loads(path.read_text())["since"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("nurse call: %s unreadable (%s); taking it as a latched request", path,
                        exc)
            return time.time()

    def _remember(self, source: str) -> None:
        path = self._state_file
        if path is None:
            return
        try:
            write_atomically(path, json.dumps({"since": time.time(), "source": source}))
        except OSError as exc:
            log.warning("nurse call: cannot keep the request in %s (%s); a restart would "
                        "forget it", path, exc)

    def _forget(self) -> None:
        path = self._state_file
        if path is not None:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("nurse call: cannot remove %s (%s)", path, exc)

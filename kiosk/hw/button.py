"""The patient's push button (and the assistive switch): short and long presses, as events."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gpiozero import DigitalInputDevice
from gpiozero.pins import Factory

from kiosk.events import ButtonPressed, Event
from kiosk.settings import GpioSettings

log = logging.getLogger(__name__)


class KioskButton:
    """A momentary push button that posts :class:`~kiosk.events.ButtonPressed` events.

    Wire one leg of a normally-open push button to a GPIO pin and the other leg to ground
    (the default, ``button_pull_up: true``: the Pi's internal pull-up holds the pin high
    until the button pulls it low). A button wired to 3V3 instead needs
    ``button_pull_up: false``, which turns on the internal pull-down. No external resistor
    is needed either way::

        from queue import SimpleQueue
        events = SimpleQueue()
        button = KioskButton(GpioSettings(button_pin=17), factory, post=events.put_nowait)

    A *short press* (released before `long_press_s`) posts ``ButtonPressed(long=False)`` when
    the button is released. A *long press* posts ``ButtonPressed(long=True)`` once, as soon as
    the button has been held `long_press_s`, and nothing more when it is let go: the patient
    feels the kiosk react while still holding the button.

    Contacts bounce: one press can make a burst of edges a few milliseconds apart. After an
    edge is accepted, further edges within `bounce_ms` are ignored. The button does this
    itself rather than relying on the pin driver, so it behaves the same on lgpio, RPi.GPIO
    and gpiozero's mock pins (which ignore ``bounce_time``).

    The long press is timed here too (a timer started at the press, cancelled at the
    release) rather than with gpiozero's `Button`, whose hold detection polls in a thread ten
    times a second for the life of the kiosk; the pin is read as a plain
    `DigitalInputDevice`, which only wakes on edges.

    For patients with tremor, ``min_press_ms`` accepts a short press only when the contact
    was held at least that long: a brief knock against the button is ignored (and logged at
    debug level). The long press is unaffected.

    The same class reads the assistive switch (``switch_pin``): give it ``pin``,
    ``pull_up`` and ``source="switch"``; the events are then posted with that source.

    gpiozero calls the handlers from its own threads; they only call `post`, which must not
    block (give it a bounded queue's ``put_nowait``). If `post` raises, the press is logged
    and dropped so gpiozero's thread survives.

    :param gpio:
        The `gpio` settings. Read: `button_pin` (BCM number like ``17`` or a name like
        ``"GPIO17"``/``"BOARD11"``), `button_pull_up` (``True``: wired to ground),
        `bounce_ms` (debounce lockout, default 50 ms; 0 turns it off) and `long_press_s`
        (hold time for a long press, default 1.5 s).
    :param factory:
        The gpiozero pin factory: ``open_pins(gpio).factory`` (:func:`kiosk.hw.pins.open_pins`).
    :param post:
        Called with each :class:`~kiosk.events.ButtonPressed`; must return at once.
    :param pin, pull_up:
        Another input than the button (the assistive switch): its pin and wiring. By default
        `button_pin` and `button_pull_up`; `bounce_ms`, `long_press_s` and `min_press_ms`
        apply to both.
    :param source:
        The ``source`` of the posted events (``"button"``, ``"switch"``).
    """

    def __init__(self, gpio: GpioSettings, factory: Factory,
                 post: Callable[[Event], None], *, pin: int | str | None = None,
                 pull_up: bool | None = None, source: str = "button") -> None:
        self._post = post
        self._source = source
        self._bounce_s = gpio.bounce_ms / 1000
        self._long_press_s = gpio.long_press_s
        self._min_press_s = gpio.min_press_ms / 1000
        self._pressed_at = 0.0  # monotonic time of the accepted press edge
        self._lock = threading.Lock()  # gpiozero's edge thread and the hold timer both call in
        self._pressed = False  # debounced state
        self._held = False  # the long press of the current press was already posted
        self._hold_timer: threading.Timer | None = None
        self._last_edge = -float("inf")  # monotonic time of the last accepted edge
        self._button = DigitalInputDevice(
            gpio.button_pin if pin is None else pin,
            pull_up=gpio.button_pull_up if pull_up is None else pull_up, pin_factory=factory)
        self._button.when_activated = self._on_press
        self._button.when_deactivated = self._on_release

    @property
    def is_pressed(self) -> bool:
        """Whether the button is down right now (raw pin level, not debounced)."""
        return bool(self._button.is_active)

    def close(self) -> None:
        """Stop listening to the button and release its pin. Safe to call twice."""
        button = self._button
        if button.closed:
            return
        button.when_activated = button.when_deactivated = None
        self._cancel_hold()
        button.close()

    def __enter__(self) -> KioskButton:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept_edge(self) -> bool:
        # Lockout debounce, the way gpiozero's native driver does it: the first edge of a
        # burst counts, the rest within bounce_ms are noise. Called with the lock held.
        now = time.monotonic()
        if now - self._last_edge < self._bounce_s:
            return False
        self._last_edge = now
        return True

    def _on_press(self) -> None:
        with self._lock:
            if self._pressed or not self._accept_edge():
                return
            self._pressed = True
            self._held = False
            self._pressed_at = self._last_edge
            self._cancel_hold()
            timer = self._hold_timer = threading.Timer(self._long_press_s, self._on_held)
            timer.daemon = True
            timer.start()

    def _on_release(self) -> None:
        with self._lock:
            if not self._pressed or not self._accept_edge():
                return
            self._pressed = False
            self._cancel_hold()
            short = not self._held
            self._held = False
            held_s = self._last_edge - self._pressed_at
        if short and held_s < self._min_press_s:
            log.debug("%s: press of %.0f ms ignored (gpio.min_press_ms is %.0f)",
                      self._source, held_s * 1000, self._min_press_s * 1000)
        elif short:
            self._send(ButtonPressed(long=False, source=self._source))

    def _cancel_hold(self) -> None:
        timer, self._hold_timer = self._hold_timer, None
        if timer is not None:
            timer.cancel()

    def _on_held(self) -> None:
        # Fired long_press_s after an accepted press: a long press only if the contact is
        # still closed (the pin level, not the debounced state, decides).
        with self._lock:
            if self._held or not self._button.is_active:
                return
            self._pressed = True
            self._held = True
            self._hold_timer = None
        self._send(ButtonPressed(long=True, source=self._source))

    def _send(self, event: ButtonPressed) -> None:
        try:
            self._post(event)
        except Exception:
            log.exception("button event %s dropped", event)

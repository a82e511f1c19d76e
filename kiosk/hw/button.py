"""The patient's one push button: a short press and a long press, posted as events."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gpiozero import Button
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
    """

    def __init__(self, gpio: GpioSettings, factory: Factory,
                 post: Callable[[Event], None]) -> None:
        self._post = post
        self._bounce_s = gpio.bounce_ms / 1000
        self._lock = threading.Lock()  # gpiozero's edge thread and its hold thread both call in
        self._pressed = False  # debounced state
        self._held = False  # the long press of the current press was already posted
        self._last_edge = -float("inf")  # monotonic time of the last accepted edge
        self._button = Button(gpio.button_pin, pull_up=gpio.button_pull_up,
                              hold_time=gpio.long_press_s, hold_repeat=False,
                              pin_factory=factory)
        self._button.when_pressed = self._on_press
        self._button.when_released = self._on_release
        self._button.when_held = self._on_held

    @property
    def is_pressed(self) -> bool:
        """Whether the button is down right now (raw pin level, not debounced)."""
        return self._button.is_pressed

    def close(self) -> None:
        """Stop listening to the button and release its pin. Safe to call twice."""
        button = self._button
        if button.closed:
            return
        button.when_pressed = button.when_released = button.when_held = None
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

    def _on_release(self) -> None:
        with self._lock:
            if not self._pressed or not self._accept_edge():
                return
            self._pressed = False
            short = not self._held
            self._held = False
        if short:
            self._send(ButtonPressed(long=False, source="button"))

    def _on_held(self) -> None:
        # gpiozero only fires this after long_press_s of continuous contact, far longer than
        # any bounce, so it is trusted even if our lockout swallowed the press edge.
        with self._lock:
            if self._held:
                return
            self._pressed = True
            self._held = True
        self._send(ButtonPressed(long=True, source="button"))

    def _send(self, event: ButtonPressed) -> None:
        try:
            self._post(event)
        except Exception:
            log.exception("button event %s dropped", event)

"""The nurse request relay: one GPIO output that closes a dry contact, read back after every
change.

The relay board's contact (COM and NO, normally open) is wired *in parallel with* the bed's
own nurse call: closing it is the same as pressing the call cord's button. It never replaces
the call cord, and the kiosk never opens a call the cord made (a parallel contact cannot).

Every write is followed by a read of the pin through gpiozero (lgpio reads the level of an
output line back from the chip). A pin that reads back the other level is not driving the
relay: shorted to 3V3 or ground, or taken over by another program. That is reported, never
hidden: `closed` is always what the pin says, not what the kiosk asked for.
"""

from __future__ import annotations

import logging

from gpiozero import DigitalOutputDevice
from gpiozero.pins import Factory

from kiosk.settings import NurseCallSettings

log = logging.getLogger(__name__)


class RelayMismatch(RuntimeError):
    """The relay's pin reads back another level than the one written."""


class NurseCallRelay:
    """The relay output of `gpio.nurse_call`.

    Wire the relay module's input to `pin` (``active_high: true``: the contact closes when the
    pin goes high; many opto-isolated boards close on *low*, then set ``active_high: false``),
    its supply to 5 V and GND, and its COM and NO terminals in parallel with the bed's nurse
    call contact (see the README)::

        relay = NurseCallRelay(settings.gpio.nurse_call, factory)
        relay.close_contact()     # the nurse call system sees a call
        relay.open_contact()
        relay.close()             # released (the contact opens)

    :param settings: `gpio.nurse_call` (reads `pin` and `active_high`).
    :param factory: the gpiozero pin factory (:func:`kiosk.hw.pins.open_pins`).
    :param closed: the contact's state at start (True when a latched request is restored).
        Call :meth:`check` to read it back: a relay that reads back wrong is still driven
        (the read-back may be what is broken), and reported.
    """

    def __init__(self, settings: NurseCallSettings, factory: Factory,
                 closed: bool = False) -> None:
        if settings.pin is None:
            raise ValueError("gpio.nurse_call.pin is not set")
        self._device = DigitalOutputDevice(settings.pin, active_high=settings.active_high,
                                           initial_value=closed, pin_factory=factory)
        self.pin_name = self._device.pin.info.name

    @property
    def closed(self) -> bool:
        """Whether the contact is closed, as read back from the pin now."""
        return bool(self._device.value)

    def check(self, expected: bool) -> None:
        """Read the pin back; raise `RelayMismatch` unless the contact is `expected`."""
        if self.closed != expected:
            raise RelayMismatch(
                f"the nurse call relay on {self.pin_name} reads back "
                f"{'closed' if self.closed else 'open'} after being set "
                f"{'closed' if expected else 'open'}: the pin is not driving the relay "
                "(shorted, wired to the wrong pin, or used by another program); check the "
                "wiring and gpio.nurse_call.pin")

    def close_contact(self) -> None:
        """Close the contact (a nurse call); read back."""
        self._device.on()
        self.check(True)

    def open_contact(self) -> None:
        """Open the contact; read back."""
        self._device.off()
        self.check(False)

    def close(self) -> None:
        """Open the contact and release the pin. Safe to call twice."""
        if not self._device.closed:
            try:
                self._device.off()
            finally:
                self._device.close()

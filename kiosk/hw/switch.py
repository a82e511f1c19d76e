"""The assistive switch input and the staff's reset input: two more momentary contacts.

An assistive switch (sip-and-puff, pillow, grasp, foot or wobble switch) ends in a 3.5 mm
mono jack. Fit a matching socket: its tip to the GPIO pin, its sleeve to ground (the Pi's
internal pull-up holds the pin high until the switch closes, as for the button). Its role:

* ``talk`` -- exactly like the push button: a short press starts a visit, stops an answer or
  ends the visit; a long press ends the visit (and, outside a visit, resets a nurse request);
* ``nurse_call`` -- every press (short or long) requests a nurse: the relay of
  `gpio.nurse_call` closes. A patient who cannot reach the bed's call cord can call this way
  with the network, the gateway and the speech service all down.

Both inputs use :class:`~kiosk.hw.button.KioskButton`, so debouncing (`bounce_ms`), the long
press (`long_press_s`) and `min_press_ms` (a press counts only when held that long, for
patients with tremor) behave the same as on the button.

The reset input (`gpio.nurse_call.reset_pin`, a key switch or a push button for staff, wired
to ground) resets a latched nurse request on any press.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpiozero.pins import Factory

from kiosk.events import ButtonPressed, Event
from kiosk.hw.button import KioskButton
from kiosk.settings import GpioSettings


class AssistiveSwitch:
    """The switch on `gpio.switch_pin`, in its `gpio.switch_role`::

        switch = AssistiveSwitch(gpio, factory, press=kiosk.press, request_nurse=nurse.request)
        switch.close()

    :param press: given the switch's `ButtonPressed` events (source ``"switch"``) in the
        ``talk`` role; must return at once.
    :param request_nurse: called with ``"switch"`` on each press in the ``nurse_call`` role;
        must return at once.
    """

    def __init__(self, gpio: GpioSettings, factory: Factory,
                 press: Callable[[Event], None],
                 request_nurse: Callable[[str], Any] | None) -> None:
        if gpio.switch_pin is None:
            raise ValueError("gpio.switch_pin is not set")
        self.role = gpio.switch_role
        if self.role == "nurse_call" and request_nurse is None:
            raise ValueError("switch_role nurse_call needs the nurse call relay")
        self._request_nurse = request_nurse
        post = press if self.role == "talk" else self._nurse_call
        self._input = KioskButton(gpio, factory, post, pin=gpio.switch_pin,
                                  pull_up=gpio.switch_pull_up, source="switch")

    @property
    def is_pressed(self) -> bool:
        return self._input.is_pressed

    def _nurse_call(self, event: Event) -> None:
        if isinstance(event, ButtonPressed) and self._request_nurse is not None:
            self._request_nurse("switch")

    def close(self) -> None:
        self._input.close()


class ResetInput:
    """The staff's reset input on `gpio.nurse_call.reset_pin` (wired to ground)::

        reset = ResetInput(gpio, factory, reset=nurse.reset)
    """

    def __init__(self, gpio: GpioSettings, factory: Factory,
                 reset: Callable[[str], None]) -> None:
        pin = gpio.nurse_call.reset_pin
        if pin is None:
            raise ValueError("gpio.nurse_call.reset_pin is not set")
        self._reset = reset
        self._input = KioskButton(gpio, factory, self._pressed, pin=pin, pull_up=True,
                                  source="reset")

    def _pressed(self, event: Event) -> None:
        self._reset("reset input")

    def close(self) -> None:
        self._input.close()

"""Choosing gpiozero's pin factory: the driver that actually toggles the Pi's GPIO pins.

gpiozero separates devices (`Button`, `LED`) from the library that talks to the chip (its
*pin factory*). The kiosk picks one from the `gpio.pin_factory` setting:

========  ==========================================================================
auto      gpiozero's own choice: lgpio on Raspberry Pi OS Bookworm and on the Pi 5,
          else RPi.GPIO, pigpio, then its pure-Python `native` driver.
lgpio     the lgpio library (``apt install python3-lgpio``); works on every Pi model.
rpigpio   RPi.GPIO (``apt install python3-rpi.gpio``); not on the Pi 5.
pigpio    the pigpio daemon (``apt install pigpio python3-pigpio``, then
          ``systemctl enable --now pigpiod``); not on the Pi 5.
native    gpiozero's built-in driver; needs no package but only runs on a Pi.
mock      simulated pins (gpiozero's `MockFactory` with PWM-capable `MockPWMPin`):
          for tests, the demo and a desk without a Pi.
========  ==========================================================================

Every device the kiosk creates is given the factory explicitly, so two kiosks in one process
(the tests) never share pins through gpiozero's global default.
"""

from __future__ import annotations

import logging
import warnings
from importlib.metadata import entry_points

from gpiozero import Device
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.settings import GpioSettings

log = logging.getLogger(__name__)

# What to install when a named factory's library is missing (the message is read by IT staff).
INSTALL_HINTS: dict[str, str] = {
    "lgpio": "install it with `apt install python3-lgpio` (or `pip install lgpio`)",
    "rpigpio": "install it with `apt install python3-rpi.gpio` (or `pip install RPi.GPIO`); "
               "it does not work on a Raspberry Pi 5, use lgpio there",
    "pigpio": "install it with `apt install pigpio python3-pigpio` and start the daemon with "
              "`systemctl enable --now pigpiod`; it does not work on a Raspberry Pi 5",
}

# Why a driver whose library is present may still fail to open the pins.
OPEN_HINTS: dict[str, str] = {
    "pigpio": "Is the pigpio daemon running (`systemctl enable --now pigpiod`)? ",
    "native": "The native driver only runs on a Raspberry Pi. ",
}

_NO_GPIO_ADVICE = (
    "On a Raspberry Pi, install python3-lgpio and make sure the kiosk's user is in the "
    "`gpio` group. On a machine without GPIO pins, set `gpio.pin_factory: mock` in the "
    "configuration file to simulate the button and the light."
)


class GpioUnavailable(RuntimeError):
    """The configured pin factory could not be loaded; the message says what to change."""


def make_pin_factory(gpio: GpioSettings) -> Factory:
    """Return the gpiozero pin factory named by `gpio.pin_factory`.

    Pass the result as ``pin_factory=`` to every gpiozero device (the kiosk's
    :class:`~kiosk.hw.button.KioskButton` and :class:`~kiosk.hw.leds.StatusLight` do)::

        factory = make_pin_factory(GpioSettings(pin_factory="mock"))
        button = KioskButton(gpio, factory, post=queue.put_nowait)

    :param gpio:
        The `gpio` section of the settings; only `pin_factory` is read. ``"auto"`` defers to
        gpiozero (which also honours the ``GPIOZERO_PIN_FACTORY`` environment variable and a
        factory already set on ``gpiozero.Device.pin_factory``), ``"mock"`` builds simulated
        PWM-capable pins, any other name loads that gpiozero driver.

    :raises GpioUnavailable:
        When the factory cannot load (no GPIO chip, missing library, daemon not running). The
        message names the `gpio.pin_factory` setting and what to install or change.
    """
    name = gpio.pin_factory
    if name == "mock":
        return MockFactory(pin_class=MockPWMPin)
    if name == "auto":
        return _default_factory()
    return _named_factory(name)


def _default_factory() -> Factory:
    # gpiozero tries each driver in turn and warns about every one that failed; those warnings
    # are the useful part of the error, so collect them instead of letting them print.
    with warnings.catch_warnings(record=True) as tried:
        warnings.simplefilter("always")
        try:
            Device.ensure_pin_factory()
        except Exception as exc:
            reasons = "; ".join(str(w.message) for w in tried)
            detail = f"{exc}" + (f" ({reasons})" if reasons else "")
            raise GpioUnavailable(
                f"gpio.pin_factory is 'auto' but no GPIO pins could be opened: {detail}. "
                f"{_NO_GPIO_ADVICE}") from exc
    # It worked, perhaps only on a fallback driver: say so in the log rather than on stderr.
    for warning in tried:
        log.warning("gpio: %s", warning.message)
    log.info("gpio: pin factory %s", type(Device.pin_factory).__name__)
    return Device.pin_factory


def _named_factory(name: str) -> Factory:
    # The same entry points gpiozero uses for GPIOZERO_PIN_FACTORY, so names match its docs.
    found = [ep for ep in entry_points(group="gpiozero_pin_factories") if ep.name == name]
    if not found:
        raise GpioUnavailable(
            f"gpio.pin_factory is {name!r}, which this gpiozero does not provide. "
            f"Use auto, lgpio, rpigpio, pigpio, native or mock.")
    try:
        factory_class = found[0].load()
        return factory_class()
    except ImportError as exc:
        raise GpioUnavailable(
            f"gpio.pin_factory is {name!r} but its library is missing ({exc}): "
            f"{INSTALL_HINTS.get(name, 'install it')}. "
            f"Or set `gpio.pin_factory: auto` to let gpiozero pick, or `mock` on a machine "
            f"without GPIO pins.") from exc
    except Exception as exc:
        raise GpioUnavailable(
            f"gpio.pin_factory is {name!r} but it could not open the GPIO pins: {exc}. "
            f"{OPEN_HINTS.get(name, '')}{_NO_GPIO_ADVICE}") from exc

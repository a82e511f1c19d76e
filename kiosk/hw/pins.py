"""Choosing gpiozero's pin factory: the driver that actually toggles the Pi's GPIO pins.

gpiozero separates devices (`Button`, `LED`) from the library that talks to the chip (its
*pin factory*). The kiosk picks one from the `gpio.pin_factory` setting:

========  ==========================================================================
auto      gpiozero's own choice: lgpio (installed with the kiosk), else RPi.GPIO, pigpio,
          then its pure-Python `native` driver.
lgpio     the lgpio library, installed with the kiosk (a dependency); every Pi model.
rpigpio   RPi.GPIO (``/opt/voice-kiosk/venv/bin/pip install RPi.GPIO``); not on the Pi 5.
pigpio    the pigpio daemon (``apt install pigpio``, ``systemctl enable --now pigpiod``,
          and ``/opt/voice-kiosk/venv/bin/pip install pigpio``); not on the Pi 5.
native    gpiozero's built-in driver; needs no package but only runs on a Pi.
mock      simulated pins (gpiozero's `MockFactory` with PWM-capable `MockPWMPin`):
          for tests, the demo and a desk without a Pi.
========  ==========================================================================

Every device the kiosk creates is given the factory explicitly, so two kiosks in one process
(the tests) never share pins through gpiozero's global default. With ``auto`` the factory *is*
gpiozero's process-wide default: releasing it closes it and clears the default (as gpiozero's
own shut-down does), so a reload resolves a fresh one instead of reusing a closed one --
lgpio's factory cannot be used after ``close()``.
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
# The kiosk's virtual environment does not see Python packages installed with apt, so the
# advice names the fix that reaches it.
INSTALL_HINTS: dict[str, str] = {
    "lgpio": "it is a dependency of the kiosk: reinstall the kiosk (`sudo systemd/install.sh`)",
    "rpigpio": "install it into the kiosk's environment with "
               "`sudo /opt/voice-kiosk/venv/bin/pip install RPi.GPIO`, or use "
               "`gpio.pin_factory: lgpio`, which is installed with the kiosk and also works "
               "on a Raspberry Pi 5",
    "pigpio": "install it into the kiosk's environment with "
              "`sudo /opt/voice-kiosk/venv/bin/pip install pigpio` and start the daemon with "
              "`apt install pigpio; systemctl enable --now pigpiod`, or use "
              "`gpio.pin_factory: lgpio` (installed with the kiosk, works on every Pi model)",
}

# Why a driver whose library is present may still fail to open the pins.
OPEN_HINTS: dict[str, str] = {
    "pigpio": "Is the pigpio daemon running (`systemctl enable --now pigpiod`)? ",
    "native": "The native driver only runs on a Raspberry Pi. ",
}

_NO_GPIO_ADVICE = (
    "On a Raspberry Pi, check that /dev/gpiochip0 exists and that the kiosk's user is in the "
    "`gpio` group (`ls -l /dev/gpiochip*`; install.sh adds it). On a machine without GPIO "
    "pins, set `gpio.pin_factory: mock` in the configuration file to simulate the button and "
    "the light. The kiosk still answers SIGUSR1 (`systemctl kill -s USR1 voice-kiosk`)."
)


class GpioUnavailable(RuntimeError):
    """The configured pin factory could not be loaded; the message says what to change."""


class Pins:
    """The pin factory the kiosk's devices use, and whether the kiosk must close it.

    >>> pins = open_pins(GpioSettings(pin_factory="mock"))
    >>> button = KioskButton(gpio, pins.factory, post=queue.put_nowait)
    >>> button.close(); pins.close()
    """

    def __init__(self, factory: Factory, *, created: bool, shared: bool) -> None:
        self.factory = factory
        self._created = created  # made for the kiosk (not handed over by someone else)
        self._shared = shared  # gpiozero's process-wide default

    def close(self) -> None:
        """Release the pins: close the factory if the kiosk made it; clear gpiozero's default
        if that is what it was, so the next `open_pins` resolves a new one."""
        if self._created:
            self.factory.close()
        if self._shared and self._created and Device.pin_factory is self.factory:
            Device.pin_factory = None


def open_pins(gpio: GpioSettings) -> Pins:
    """The pin factory named by `gpio.pin_factory`, wrapped so it is released correctly.

    Pass ``pins.factory`` as ``pin_factory=`` to every gpiozero device (the kiosk's
    :class:`~kiosk.hw.button.KioskButton` and :class:`~kiosk.hw.leds.StatusLight` do) and call
    ``pins.close()`` after the devices are closed.

    :param gpio:
        The `gpio` section of the settings; only `pin_factory` is read. ``"auto"`` defers to
        gpiozero (which also honours the ``GPIOZERO_PIN_FACTORY`` environment variable and a
        factory already set on ``gpiozero.Device.pin_factory``, which is then left open),
        ``"mock"`` builds simulated PWM-capable pins, any other name loads that gpiozero driver.

    :raises GpioUnavailable:
        When the factory cannot load (no GPIO chip, missing library, daemon not running). The
        message names the `gpio.pin_factory` setting and what to install or change.
    """
    name = gpio.pin_factory
    if name == "mock":
        return Pins(MockFactory(pin_class=MockPWMPin), created=True, shared=False)
    if name == "auto":
        created = Device.pin_factory is None
        return Pins(_default_factory(), created=created, shared=True)
    return Pins(_named_factory(name), created=True, shared=False)


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
    factory = Device.pin_factory
    assert factory is not None
    log.info("gpio: pin factory %s", type(factory).__name__)
    return factory


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

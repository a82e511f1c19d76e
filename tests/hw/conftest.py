"""Fixtures for the GPIO tests: gpiozero's mock pins, reset between tests, and a thread check.

The real gpiozero `Button`, `LED`, `PWMLED` and `RGBLED` classes run against `MockFactory` pins
with `MockPWMPin`, so a test drives a pin (`drive_low()`) or reads what the LED wrote to it
(`state`, `states`) exactly as a multimeter on the Pi's header would.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from kiosk.hw.pins import open_pins
from kiosk.settings import GpioSettings

from .hw_scope import wait_until

# lgpio (gpiozero's first choice under `auto`, a kiosk dependency) starts a notification thread
# for the life of the process when it is first imported: import it before any test, so the
# stray-thread check does not blame whichever test happens to import it first.
with contextlib.suppress(ImportError):
    import lgpio  # noqa: F401


@pytest.fixture(autouse=True)
def no_stray_threads() -> Iterator[None]:
    """Every test must leave no thread behind (blink threads, hold threads...)."""
    before = set(threading.enumerate())
    yield
    leftover = lambda: [t for t in threading.enumerate() if t not in before]  # noqa: E731
    if not wait_until(lambda: not leftover(), timeout_s=3):
        pytest.fail(f"threads left running: {[t.name for t in leftover()]}")


@pytest.fixture(autouse=True)
def clean_default_factory() -> Iterator[None]:
    """gpiozero keeps a process-wide default factory; no test may see another's."""
    Device.pin_factory = None
    yield
    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = None


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """Fresh simulated pins (PWM-capable), built the way the kiosk builds them."""
    pins = open_pins(GpioSettings(pin_factory="mock"))
    yield pins.factory
    pins.close()
    pins.factory.reset()

"""A reload keeps the button working with `pin_factory: auto`, proven through the path `auto`
really takes: gpiozero's own resolution of `Device.pin_factory` (here by GPIOZERO_PIN_FACTORY
and an entry point) to a factory that, like lgpio's on a Pi, refuses every use once closed.
gpiozero's MockFactory keeps working after close(), which is how the reuse of a closed
factory went unnoticed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from gpiozero import Device

from kiosk.assembly import Kiosk
from kiosk.settings import AudioSettings, GatewaySettings, GpioSettings, Settings
from tests.rig import FACTORY_NAME, PINS_DIR

from .hw_scope import wait_until

BUTTON = 17


@pytest.fixture
def rig_pins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(PINS_DIR))
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", FACTORY_NAME)
    Device.pin_factory = None  # let gpiozero resolve it, as `auto` does on a Pi
    yield


def settings() -> Settings:
    # No sound devices and a gateway nobody answers: only the button matters here.
    return Settings(gateway=GatewaySettings(url="simulator"),
                    audio=AudioSettings(input_device="no-such-mic", output_device="no-such-spk"),
                    gpio=GpioSettings(pin_factory="auto", button_pin=BUTTON, bounce_ms=0))


def press(kiosk: Kiosk) -> None:
    """A short press on the live factory's pin, seen by the kiosk's metrics."""
    factory = Device.pin_factory
    assert factory is not None
    before = kiosk.metrics._presses
    factory.pin(BUTTON).drive_low()  # raises if the factory was closed
    time.sleep(0.01)
    factory.pin(BUTTON).drive_high()
    assert wait_until(lambda: kiosk.metrics._presses == before + 1, timeout_s=2)


def test_the_button_works_after_a_reload_with_auto(rig_pins: None) -> None:
    first = Kiosk(settings())
    first.start()
    try:
        assert type(Device.pin_factory).__name__ == "RigFactory"  # gpiozero's own choice
        old_factory = Device.pin_factory
        press(first)
    finally:
        first.close()  # what a reload does first
    assert Device.pin_factory is None  # released, never reused after close()
    second = Kiosk(settings())  # ... then it builds the kiosk from the new file
    second.start()
    try:
        assert Device.pin_factory is not old_factory
        press(second)
    finally:
        second.close()

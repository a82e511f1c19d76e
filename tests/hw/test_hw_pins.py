"""Choosing the pin driver, and the messages IT staff see when GPIO is not there."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.hw.pins import GpioUnavailable, open_pins
from kiosk.settings import GpioSettings

ON_A_PI = any(Path("/dev").glob("gpiochip*")) or Path("/dev/gpiomem").exists()
LIBRARIES = {"lgpio": "lgpio", "rpigpio": "RPi", "pigpio": "pigpio"}


def test_mock_gives_pwm_capable_simulated_pins():
    pins = open_pins(GpioSettings(pin_factory="mock"))
    try:
        assert isinstance(pins.factory, MockFactory)
        assert pins.factory.pin_class is MockPWMPin
        assert Device.pin_factory is None  # the process-wide default is left alone
    finally:
        pins.close()


def test_each_mock_factory_has_its_own_pins():
    first = open_pins(GpioSettings(pin_factory="mock"))
    second = open_pins(GpioSettings(pin_factory="mock"))
    try:
        assert first.factory.pin(17) is not second.factory.pin(17)
    finally:
        first.close()
        second.close()


@pytest.mark.skipif(ON_A_PI, reason="this machine has GPIO pins")
def test_auto_without_gpio_says_which_setting_to_change(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    with pytest.raises(GpioUnavailable) as caught:
        open_pins(GpioSettings(pin_factory="auto"))
    message = str(caught.value)
    assert "gpio.pin_factory" in message
    assert "`gpio.pin_factory: mock`" in message
    assert "/dev/gpiochip0" in message and "`gpio` group" in message
    assert "SIGUSR1" in message  # what still works
    assert "Falling back from lgpio" in message  # gpiozero's own reasons are kept


def test_auto_follows_gpiozero_environment_variables(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    pins = open_pins(GpioSettings(pin_factory="auto"))
    assert isinstance(pins.factory, MockFactory) and pins.factory.pin_class is MockPWMPin
    assert Device.pin_factory is pins.factory  # auto *is* gpiozero's own default
    pins.close()
    assert Device.pin_factory is None  # released like gpiozero's own shut-down: never reused


def test_auto_leaves_a_factory_someone_else_chose_open():
    chosen = MockFactory()
    Device.pin_factory = chosen
    pins = open_pins(GpioSettings(pin_factory="auto"))
    assert pins.factory is chosen
    pins.close()
    assert Device.pin_factory is chosen  # not ours to close
    chosen.pin(17)  # still usable


@pytest.mark.skipif(ON_A_PI, reason="this machine has GPIO pins")
@pytest.mark.parametrize("name", ["lgpio", "rpigpio", "pigpio", "native"])
def test_named_factory_that_cannot_load(name):
    with pytest.raises(GpioUnavailable) as caught:
        open_pins(GpioSettings(pin_factory=name))
    message = str(caught.value)
    assert f"gpio.pin_factory is {name!r}" in message
    assert "mock" in message
    module = LIBRARIES.get(name)
    if module and importlib.util.find_spec(module) is None:
        assert "its library is missing" in message and "install" in message
    if name == "native":
        assert "only runs on a Raspberry Pi" in message


def test_unknown_factory_name():
    # The YAML loader rejects this first; a hand-built GpioSettings can still carry it.
    with pytest.raises(GpioUnavailable, match="'gpiod', which this gpiozero does not provide"):
        open_pins(GpioSettings(pin_factory="gpiod"))

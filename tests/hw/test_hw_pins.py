"""Choosing the pin driver, and the messages IT staff see when GPIO is not there."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.hw.pins import GpioUnavailable, make_pin_factory
from kiosk.settings import GpioSettings

ON_A_PI = any(Path("/dev").glob("gpiochip*")) or Path("/dev/gpiomem").exists()
LIBRARIES = {"lgpio": "lgpio", "rpigpio": "RPi", "pigpio": "pigpio"}


def test_mock_gives_pwm_capable_simulated_pins():
    factory = make_pin_factory(GpioSettings(pin_factory="mock"))
    try:
        assert isinstance(factory, MockFactory)
        assert factory.pin_class is MockPWMPin
        assert Device.pin_factory is None  # the process-wide default is left alone
    finally:
        factory.close()


def test_each_mock_factory_has_its_own_pins():
    first = make_pin_factory(GpioSettings(pin_factory="mock"))
    second = make_pin_factory(GpioSettings(pin_factory="mock"))
    try:
        assert first.pin(17) is not second.pin(17)
    finally:
        first.close()
        second.close()


@pytest.mark.skipif(ON_A_PI, reason="this machine has GPIO pins")
def test_auto_without_gpio_says_which_setting_to_change(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    with pytest.raises(GpioUnavailable) as caught:
        make_pin_factory(GpioSettings(pin_factory="auto"))
    message = str(caught.value)
    assert "gpio.pin_factory" in message
    assert "`gpio.pin_factory: mock`" in message
    assert "python3-lgpio" in message and "`gpio` group" in message
    assert "Falling back from lgpio" in message  # gpiozero's own reasons are kept


def test_auto_follows_gpiozero_environment_variables(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    factory = make_pin_factory(GpioSettings(pin_factory="auto"))
    assert isinstance(factory, MockFactory) and factory.pin_class is MockPWMPin


def test_auto_reuses_a_factory_already_chosen():
    chosen = MockFactory()
    Device.pin_factory = chosen
    assert make_pin_factory(GpioSettings(pin_factory="auto")) is chosen


@pytest.mark.skipif(ON_A_PI, reason="this machine has GPIO pins")
@pytest.mark.parametrize("name", ["lgpio", "rpigpio", "pigpio", "native"])
def test_named_factory_that_cannot_load(name):
    with pytest.raises(GpioUnavailable) as caught:
        make_pin_factory(GpioSettings(pin_factory=name))
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
        make_pin_factory(GpioSettings(pin_factory="gpiod"))

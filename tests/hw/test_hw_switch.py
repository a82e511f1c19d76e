"""The assistive switch in both roles, and min_press_ms on the button and the switch, over
gpiozero's mock pins."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk.events import ButtonPressed, Event
from kiosk.hw.button import KioskButton
from kiosk.hw.switch import AssistiveSwitch, ResetInput
from kiosk.settings import GpioSettings, NurseCallSettings

from .posted import drain

SWITCH_PIN = 27


def hold(seconds: float) -> None:
    """The patient keeps the switch closed for `seconds` (scenario timing, not sync)."""
    time.sleep(seconds)


def press(pin, held_s: float) -> None:
    """A press of `held_s` on a switch wired to ground."""
    pin.drive_low()
    hold(held_s)
    pin.drive_high()



@pytest.fixture
def events() -> queue.Queue[Event]:
    return queue.Queue(maxsize=16)


@pytest.fixture
def closers() -> Iterator[list]:
    made: list = []
    yield made
    for part in made:
        part.close()


def test_switch_in_the_talk_role_presses_like_the_button(factory: MockFactory, events,
                                                         closers):
    gpio = GpioSettings(switch_pin=SWITCH_PIN, switch_role="talk", long_press_s=0.4)
    requests: list[str] = []
    closers.append(AssistiveSwitch(gpio, factory, events.put_nowait, requests.append))
    pin = factory.pin(SWITCH_PIN)
    assert pin.pull == "up"  # wired to ground, like the button
    press(pin, 0.08)
    assert events.get(timeout=2) == ButtonPressed(long=False, source="switch")
    hold(0.15)  # past bounce_ms: a new press
    press(pin, 0.6)  # held past long_press_s: a long press, as on the button
    assert drain(events) == [ButtonPressed(long=True, source="switch")]
    assert requests == []  # no nurse call in the talk role


def test_switch_in_the_nurse_call_role_requests_a_nurse_on_every_press(
        factory: MockFactory, events, closers):
    gpio = GpioSettings(switch_pin=SWITCH_PIN, switch_role="nurse_call", long_press_s=0.4,
                        nurse_call=NurseCallSettings(pin=22))
    requests: queue.Queue[str] = queue.Queue()
    closers.append(AssistiveSwitch(gpio, factory, events.put_nowait, requests.put_nowait))
    pin = factory.pin(SWITCH_PIN)
    press(pin, 0.08)
    assert requests.get(timeout=2) == "switch"
    hold(0.15)
    press(pin, 0.6)  # a patient who holds on: still one request
    assert drain(requests) == ["switch"]
    assert drain(events) == []  # never a visit: the switch does not talk in this role


def test_switch_wired_to_3v3_uses_the_pull_down(factory: MockFactory, events, closers):
    gpio = GpioSettings(switch_pin=SWITCH_PIN, switch_pull_up=False)
    switch = AssistiveSwitch(gpio, factory, events.put_nowait, None)
    closers.append(switch)
    pin = factory.pin(SWITCH_PIN)
    assert pin.pull == "down" and not switch.is_pressed
    pin.drive_high()
    assert switch.is_pressed
    hold(0.08)
    pin.drive_low()
    assert events.get(timeout=2) == ButtonPressed(long=False, source="switch")


@pytest.mark.parametrize("which", ["button", "switch"])
def test_min_press_ms_ignores_knocks_and_accepts_a_held_press(factory: MockFactory, events,
                                                              closers, which):
    gpio = GpioSettings(min_press_ms=200, bounce_ms=20, switch_pin=SWITCH_PIN)
    if which == "button":
        closers.append(KioskButton(gpio, factory, events.put_nowait))
        pin = factory.pin(17)
    else:
        closers.append(AssistiveSwitch(gpio, factory, events.put_nowait, None))
        pin = factory.pin(SWITCH_PIN)
    for _ in range(3):  # a tremor: three knocks, each too short
        press(pin, 0.06)
        hold(0.05)
    assert drain(events) == []
    press(pin, 0.3)  # held past min_press_ms
    assert drain(events) == [ButtonPressed(long=False, source=which)]


def test_without_min_press_ms_a_short_knock_counts(factory: MockFactory, events, closers):
    closers.append(KioskButton(GpioSettings(bounce_ms=20), factory, events.put_nowait))
    press(factory.pin(17), 0.04)
    assert drain(events) == [ButtonPressed(long=False, source="button")]


def test_reset_input_resets_on_any_press(factory: MockFactory, closers):
    gpio = GpioSettings(nurse_call=NurseCallSettings(pin=22, reset_pin=23))
    resets: queue.Queue[str] = queue.Queue()
    closers.append(ResetInput(gpio, factory, resets.put_nowait))
    press(factory.pin(23), 0.08)
    assert resets.get(timeout=2) == "reset input"
    assert drain(resets) == []

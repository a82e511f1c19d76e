"""The patient's button: press, bounce, hold — on gpiozero's real Button over mock pins."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import pytest
from gpiozero import Button
from gpiozero.pins.mock import MockFactory

from kiosk.events import ButtonPressed, Event
from kiosk.hw.button import KioskButton
from kiosk.settings import GpioSettings

from .posted import drain

SHORT = ButtonPressed(long=False, source="button")
LONG = ButtonPressed(long=True, source="button")


def hold(seconds: float) -> None:
    """The patient's finger stays put for `seconds` (scenario timing, not synchronisation)."""
    time.sleep(seconds)



@pytest.fixture
def events() -> queue.Queue[Event]:
    return queue.Queue(maxsize=16)


@pytest.fixture
def make_button(factory: MockFactory, events: queue.Queue[Event]) -> Iterator:
    made: list[KioskButton] = []

    def make(**gpio: object) -> KioskButton:
        button = KioskButton(GpioSettings(**gpio), factory, post=events.put_nowait)
        made.append(button)
        return button

    yield make
    for button in made:
        button.close()


def test_short_press_posts_one_event_on_release(make_button, factory, events):
    make_button(button_pin=17)
    pin = factory.pin(17)
    pin.drive_low()  # pressed: wired to ground, pulled up
    with pytest.raises(queue.Empty):
        events.get(timeout=0.1)  # not yet: it might still become a long press
    pin.drive_high()
    assert events.get(timeout=2) == SHORT
    assert drain(events) == []


def test_pin_given_by_name_and_pull_down_wiring(make_button, factory, events):
    button = make_button(button_pin="GPIO27", button_pull_up=False)
    pin = factory.pin(27)
    assert pin.pull == "down" and not button.is_pressed
    pin.drive_high()  # wired to 3V3: pressed is high
    assert button.is_pressed
    hold(0.08)
    pin.drive_low()
    assert events.get(timeout=2) == SHORT


def bounce_burst(pin, end_high: bool) -> None:
    # Contacts chattering for a few milliseconds: edges with no pause between them.
    for _ in range(4):
        pin.drive_high()
        pin.drive_low()
    if end_high:
        pin.drive_high()


def test_bounce_burst_counts_as_one_press(make_button, factory, events):
    make_button(button_pin=17, bounce_ms=50)
    pin = factory.pin(17)
    bounce_burst(pin, end_high=False)  # press chatters, settles pressed
    hold(0.15)
    bounce_burst(pin, end_high=True)  # release chatters, settles released
    assert drain(events) == [SHORT]


def test_without_debounce_the_same_burst_is_many_presses(make_button, factory, events):
    # The control experiment: proves the burst above really is noisy.
    make_button(button_pin=17, bounce_ms=0)
    pin = factory.pin(17)
    bounce_burst(pin, end_high=False)
    hold(0.15)
    bounce_burst(pin, end_high=True)
    assert len(drain(events)) > 1


def test_long_press_posts_one_long_event_and_no_short(make_button, factory, events):
    make_button(button_pin=17, long_press_s=0.3)
    pin = factory.pin(17)
    pressed_at = time.monotonic()
    pin.drive_low()
    assert events.get(timeout=3) == LONG
    waited = time.monotonic() - pressed_at
    assert 0.25 <= waited <= 1.0, f"long press reported after {waited:.3f} s, want ~0.3 s"
    hold(0.4)  # keep holding past a second hold_time: still only one event
    pin.drive_high()
    assert drain(events) == []


def test_long_press_with_chattering_contacts_is_still_one_long_press(make_button, factory,
                                                                     events):
    make_button(button_pin=17, long_press_s=0.3, bounce_ms=50)
    pin = factory.pin(17)
    bounce_burst(pin, end_high=False)
    assert events.get(timeout=3) == LONG
    bounce_burst(pin, end_high=True)
    assert drain(events) == []


def test_short_press_after_long_press(make_button, factory, events):
    make_button(button_pin=17, long_press_s=0.3)
    pin = factory.pin(17)
    pin.drive_low()
    assert events.get(timeout=3) == LONG
    pin.drive_high()
    hold(0.08)
    pin.drive_low()
    hold(0.08)
    pin.drive_high()
    assert drain(events) == [SHORT]


def test_a_failing_post_drops_the_press_but_keeps_the_button_working(factory, caplog):
    posted: list[Event] = []

    def post(event: Event) -> None:
        if not posted:
            posted.append(event)
            raise queue.Full  # controller queue full: the press is lost, not the button
        posted.append(event)

    with KioskButton(GpioSettings(button_pin=17), factory, post=post):
        pin = factory.pin(17)
        for _ in range(2):
            pin.drive_low()
            hold(0.08)
            pin.drive_high()
            hold(0.08)
    assert posted == [SHORT, SHORT]
    assert "dropped" in caplog.text


def test_close_releases_the_pin(make_button, factory, events):
    button = make_button(button_pin=17)
    button.close()
    button.close()  # twice is fine
    factory.pin(17).drive_low()
    factory.pin(17).drive_high()
    assert drain(events, quiet_s=0.1) == []
    Button(17, pin_factory=factory).close()  # the pin is free for someone else

"""The status light: each state's pattern read back from the pins, for every kind of LED."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory

from kiosk.hw.leds import StatusLight
from kiosk.settings import DEFAULT_PATTERNS, GpioSettings, LedPattern
from kiosk.states import State, StateChange

from .hw_scope import assert_rhythm, close_to, timeline, wait_until

SINGLE_PIN, PWM_PIN, RGB_PINS = 18, 23, (12, 13, 19)
AMBER_GREEN = 0xBF / 255  # green part of the connecting colour #ffbf00


@pytest.fixture
def lights(factory: MockFactory) -> Iterator:
    """Build lights on the shared mock pins; all are closed after the test."""
    made: list[StatusLight] = []

    def make(**gpio: object) -> StatusLight:
        light = StatusLight(GpioSettings(**gpio), factory)
        made.append(light)
        return light

    yield make
    for light in made:
        light.close()


@pytest.fixture
def trio(lights, factory):
    """A single, a PWM and an RGB light side by side, pins cleared just before they show."""
    single = lights(led_kind="single", led_pin=SINGLE_PIN)
    pwm = lights(led_kind="pwm", led_pin=PWM_PIN)
    rgb = lights(led_kind="rgb", rgb_pins=list(RGB_PINS))
    pins = {"single": factory.pin(SINGLE_PIN), "pwm": factory.pin(PWM_PIN),
            "r": factory.pin(RGB_PINS[0]), "g": factory.pin(RGB_PINS[1]),
            "b": factory.pin(RGB_PINS[2])}

    def show(state: State) -> dict:
        for pin in pins.values():
            pin.clear_states()
        for light in (single, pwm, rgb):
            light.show(state)
        return pins

    return show


def levels(pins: dict) -> dict[str, float]:
    return {name: round(float(pin.state), 3) for name, pin in pins.items()}


def assert_steady(pins: dict, want: dict[str, float], settle_s: float = 0.2) -> None:
    """The pins reach `want` and then stay there (no blinking) for `settle_s`."""
    assert wait_until(lambda: levels(pins) == want, 1.0), f"{levels(pins)} != {want}"
    changes = {name: len(pin.states) for name, pin in pins.items()}
    time.sleep(settle_s)  # observation window: nothing may change during it
    assert {name: len(pin.states) for name, pin in pins.items()} == changes
    assert levels(pins) == want


def assert_pulse(pin, period_s: float, timeout_s: float = 4.0) -> None:
    """A fade: many levels in between, full brightness once per `period_s`."""
    peaks = lambda: [at for at, level in timeline(pin) if level > 0.999]  # noqa: E731
    assert wait_until(lambda: len(peaks()) >= 2, timeout_s), timeline(pin)
    first, second = peaks()[:2]
    assert close_to(second - first, period_s), f"peaks {second - first:.3f} s apart"
    between = [level for at, level in timeline(pin) if first < at < second]
    assert len({round(v, 2) for v in between}) >= 10, "not a fade"
    assert min(between) < 0.05


def test_idle_is_a_dim_glow(trio):
    pins = trio(State.IDLE)
    # a single LED cannot dim: it stays dark; PWM glows at 10 %; RGB a dim blue
    assert_steady(pins, {"single": 0, "pwm": 0.1, "r": 0, "g": 0, "b": 0.1})


def test_listening_is_solid(trio):
    pins = trio(State.LISTENING)
    assert_steady(pins, {"single": 1, "pwm": 1, "r": 0, "g": 1, "b": 0})


def test_connecting_is_a_slow_blink(trio):
    pins = trio(State.CONNECTING)
    blink = [(1, 0.5), (0, 0.5), (1, 0.5)]
    for name in ("single", "pwm", "r"):
        assert_rhythm(pins[name], blink, timeout_s=4)
    assert_rhythm(pins["g"], [(AMBER_GREEN, 0.5), (0, 0.5)], timeout_s=4)
    assert len(pins["b"].states) == 1  # blue never lit


def test_error_is_a_fast_blink(trio):
    pins = trio(State.ERROR)
    blink = [(1, 0.1), (0, 0.1)] * 3
    for name in ("single", "pwm", "r"):
        assert_rhythm(pins[name], blink, timeout_s=3)
    assert len(pins["g"].states) == len(pins["b"].states) == 1  # red only


def test_thinking_is_a_double_blink(trio):
    pins = trio(State.THINKING)
    double = [(1, 0.1), (0, 0.1), (1, 0.1), (0, 0.6), (1, 0.1), (0, 0.1), (1, 0.1)]
    for name in ("single", "pwm", "g", "b"):  # cyan: green and blue
        assert_rhythm(pins[name], double, timeout_s=4)
    assert len(pins["r"].states) == 1


def test_speaking_is_a_pulse(trio):
    pins = trio(State.SPEAKING)
    assert_pulse(pins["pwm"], period_s=1.2)
    for name in ("r", "g", "b"):  # white: all three fade together
        assert_pulse(pins[name], period_s=1.2)
    # A single LED cannot fade: a slow blink, on for a whole fade cycle.
    assert_rhythm(pins["single"], [(1, 1.2)], timeout_s=3)


def test_common_anode_parts_are_driven_inverted(lights, factory):
    single = lights(led_kind="single", led_pin=SINGLE_PIN, led_active_high=False)
    pwm = lights(led_kind="pwm", led_pin=PWM_PIN, led_active_high=False)
    rgb = lights(led_kind="rgb", rgb_pins=list(RGB_PINS), led_active_high=False)
    pins = {"single": factory.pin(SINGLE_PIN), "pwm": factory.pin(PWM_PIN),
            "r": factory.pin(RGB_PINS[0]), "g": factory.pin(RGB_PINS[1]),
            "b": factory.pin(RGB_PINS[2])}
    # dark means high: no current through an LED whose anode is at 3V3
    assert levels(pins) == {"single": 1, "pwm": 1, "r": 1, "g": 1, "b": 1}
    for light in (single, pwm, rgb):
        light.show(State.IDLE)
    assert levels(pins) == {"single": 1, "pwm": 0.9, "r": 1, "g": 1, "b": 0.9}
    for pin in pins.values():
        pin.clear_states()
    for light in (single, pwm, rgb):
        light.show(State.ERROR)  # from idle: lit is low, dark is high
    for name in ("single", "pwm", "r"):
        assert_rhythm(pins[name], [(0, 0.1), (1, 0.1), (0, 0.1)], timeout_s=3)
    for light in (single, pwm, rgb):
        light.show(State.LISTENING)
    assert levels(pins) == {"single": 0, "pwm": 0, "r": 1, "g": 0, "b": 1}


def test_yaml_overrides_replace_the_defaults(lights, factory):
    patterns = {
        "idle": LedPattern(mode="off"),
        "listening": LedPattern(mode="on", brightness=0.5, color="#ff8000"),
        "thinking": LedPattern(mode="blink", on_s=0.05, off_s=0.15, color="#00ff00"),
    }
    rgb = lights(led_kind="rgb", rgb_pins=list(RGB_PINS), led_patterns=patterns)
    pwm = lights(led_kind="pwm", led_pin=PWM_PIN, led_patterns=patterns)
    r, g, b = (factory.pin(p) for p in RGB_PINS)
    rgb.show("listening")
    pwm.show("listening")
    assert (r.state, round(g.state, 3), b.state) == (0.5, round(0x80 / 255 * 0.5, 3), 0)
    assert factory.pin(PWM_PIN).state == 0.5
    rgb.show("idle")
    pwm.show("idle")
    assert (r.state, g.state, b.state, factory.pin(PWM_PIN).state) == (0, 0, 0, 0)
    g.clear_states()
    rgb.show("thinking")
    assert_rhythm(g, [(1, 0.05), (0, 0.15), (1, 0.05)], timeout_s=3)
    # a state without an override keeps its default: error is a fast red blink
    assert DEFAULT_PATTERNS["error"] == LedPattern(mode="blink", on_s=0.1, off_s=0.1,
                                                   color="#ff0000")
    r.clear_states()
    rgb.show("error")
    assert_rhythm(r, [(1, 0.1), (0, 0.1), (1, 0.1)], timeout_s=3)


@pytest.mark.parametrize("kind", ["single", "pwm", "rgb"])
def test_a_new_state_replaces_the_running_pattern_at_once(lights, factory, kind):
    light = lights(led_kind=kind, led_pin=PWM_PIN, rgb_pins=list(RGB_PINS))
    pins = [factory.pin(p) for p in (RGB_PINS if kind == "rgb" else [PWM_PIN])]
    solid = [0.0, 1.0, 0.0] if kind == "rgb" else [1.0]  # listening: green / on
    took = []
    for running in (State.CONNECTING, State.THINKING, State.SPEAKING, State.ERROR) * 3:
        light.show(running)
        started = time.monotonic()
        light.show(State.LISTENING)
        took.append(time.monotonic() - started)
        # already showing the new pattern when show() returns
        assert [pin.state for pin in pins] == solid
    assert statistics.median(took) < 0.02, took
    assert max(took) < 0.2, took  # a loaded machine may delay one switch, never by much


def pattern_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


@pytest.mark.parametrize("kind", ["single", "pwm", "rgb"])
def test_twenty_quick_changes_leave_only_the_last_pattern(lights, factory, kind):
    before = set(threading.enumerate())
    light = lights(led_kind=kind, led_pin=PWM_PIN, rgb_pins=list(RGB_PINS))
    pin, *others = [factory.pin(p) for p in (RGB_PINS if kind == "rgb" else [PWM_PIN])]
    states = list(State)
    for i in range(19):  # every mode started and interrupted, several times
        light.show(states[i % len(states)])
    for p in (pin, *others):
        p.clear_states()
    light.show(State.ERROR)  # the 20th: red fast blink
    assert len(pattern_threads(before)) == 1, [t.name for t in pattern_threads(before)]
    assert_rhythm(pin, [(1, 0.1), (0, 0.1)] * 3, timeout_s=3)
    # nothing from an earlier pattern still writes: green and blue went dark and stayed so
    for p in others:
        assert [change.state for change in p.states[1:]] in ([], [0.0]), p.states
    light.show(State.LISTENING)  # steady: no thread at all
    assert pattern_threads(before) == []
    light.show(State.THINKING)
    light.close()
    assert pattern_threads(before) == []


def test_observer_hook_follows_state_changes(lights, factory):
    light = lights(led_kind="pwm", led_pin=PWM_PIN)
    light.on_state_change(StateChange(State.IDLE, State.LISTENING, "connected", "s1", 1.0))
    # Shown by the light's own thread: the controller never waits on a pin.
    assert wait_until(lambda: light.state is State.LISTENING, timeout_s=2)
    assert factory.pin(PWM_PIN).state == 1.0


def test_close_turns_the_light_off_and_frees_the_pins(lights, factory):
    light = lights(led_kind="single", led_pin=SINGLE_PIN)
    light.show(State.ERROR)
    light.close()
    light.close()
    pin = factory.pin(SINGLE_PIN)
    assert pin.state == 0 and pin.function == "input"
    light.show(State.LISTENING)  # after close: ignored, not an error
    assert pin.state == 0
    LED(SINGLE_PIN, pin_factory=factory).close()  # free for another device


def test_no_led_claims_no_pins(lights, factory):
    light = lights(led_kind="none")
    for state in State:
        light.show(state)
    assert light.device is None and light.state is State.ERROR
    assert factory.pins == {}


def test_bad_colour_fails_when_the_light_is_built(factory):
    gpio = GpioSettings(led_kind="rgb", led_patterns={"error": LedPattern(color="red")})
    with pytest.raises(ValueError, match="'red' is not of the form #rrggbb"):
        StatusLight(gpio, factory)
    assert factory.pins == {}  # nothing half-built


def test_unknown_mode_fails_when_the_light_is_built(factory):
    gpio = GpioSettings(led_kind="pwm", led_patterns={"idle": LedPattern(mode="sparkle")})
    with pytest.raises(ValueError, match="'sparkle' for state idle is not one of off, on"):
        StatusLight(gpio, factory)
    assert factory.pins == {}

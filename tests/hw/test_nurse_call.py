"""The nurse request over gpiozero's mock pins: the relay closes and is read back, the request
latches with the light's nurse pattern and the call cue, and stays until it is reset (long
press, reset input, reset time); the latch survives a restart; a relay that reads back wrong
is reported."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.audio.cues import CuePlayer
from kiosk.audio.playback import Playback
from kiosk.hw.leds import NURSE_FLASH, NURSE_FLASHES, StatusLight
from kiosk.hw.relay import NurseCallRelay
from kiosk.hw.switch import AssistiveSwitch, ResetInput
from kiosk.nurse import NurseCall, NurseCallChange
from kiosk.service.metrics import Metrics
from kiosk.settings import AudioSettings, GpioSettings, MetricsSettings, NurseCallSettings
from kiosk.states import State

from .hw_scope import segments, wait_until

RELAY, LED, SWITCH, RESET = 22, 18, 27, 23


class Changes:
    """A nurse call observer that keeps every change."""

    def __init__(self) -> None:
        self.seen: list[NurseCallChange] = []

    def on_nurse_call(self, change: NurseCallChange) -> None:
        self.seen.append(change)


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    for family in metrics.families():
        for sample_labels, value in family.samples:
            if family.name == f"voice_kiosk_{name}" and all(
                    sample_labels.get(k) == v for k, v in labels.items()):
                return value
    raise KeyError(name)


class Bedside:
    """A nurse call with its relay, a PWM light, the cues on a playback without a device,
    the metrics and a change log, all on one mock factory."""

    def __init__(self, factory: MockFactory, settings: NurseCallSettings,
                 state_dir: Path | None = None) -> None:
        self.gpio = GpioSettings(led_kind="pwm", led_pin=LED, nurse_call=settings,
                                 switch_pin=SWITCH, switch_role="nurse_call")
        self.factory = factory
        self.light = StatusLight(self.gpio, factory)
        self.light.show(State.IDLE)
        self.playback = Playback(AudioSettings(prebuffer_ms=0))
        self.playback.prepare(24000)
        self.cues = CuePlayer(self.playback, AudioSettings(cue_volume=100))
        self.metrics = Metrics(MetricsSettings(), "bed-1")
        self.changes = Changes()
        self.problems: list[str] = []
        self.nurse = NurseCall(settings, self.open_relay, str(state_dir) if state_dir else None,
                               on_problem=self.problems.append)
        for observer in (self.light, self.cues, self.metrics, self.changes):
            self.nurse.add_observer(observer)
        self.parts: list = []

    def open_relay(self, closed: bool) -> NurseCallRelay:
        return NurseCallRelay(self.gpio.nurse_call, self.factory, closed)

    @property
    def relay(self) -> MockPWMPin:
        return self.factory.pin(RELAY)

    def wait(self, predicate: Callable[[], object], what: str, timeout_s: float = 3) -> None:
        assert wait_until(predicate, timeout_s), what

    def cue_audio(self, blocks: int = 60) -> np.ndarray:
        return np.concatenate([np.frombuffer(self.playback.callback(None, 480, {}, 0)[0],
                                             np.int16) for _ in range(blocks)])

    def close(self) -> None:
        for part in self.parts:
            part.close()
        self.nurse.close()
        self.light.close()


@pytest.fixture
def bedside(factory: MockFactory) -> Iterator[Callable[..., Bedside]]:
    made: list[Bedside] = []

    def make(state_dir: Path | None = None, **settings: object) -> Bedside:
        b = Bedside(factory, NurseCallSettings(pin=RELAY, **settings), state_dir)  # type: ignore[arg-type]
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_relay_is_read_back_open_at_start(bedside):
    b = bedside()
    b.nurse.start()
    assert b.relay.function == "output" and b.relay.state == 0
    assert b.changes.seen == [NurseCallChange(False, False, "start")]
    assert metric(b.metrics, "nurse_call_active") == 0
    assert metric(b.metrics, "nurse_call_relay_closed") == 0
    assert metric(b.metrics, "nurse_calls_total", source="switch") == 0
    assert b.nurse.relay_ok and not b.problems


def test_a_switch_press_closes_the_relay_latches_shows_and_sounds(bedside):
    b = bedside()
    b.nurse.start()
    b.parts.append(AssistiveSwitch(b.gpio, b.factory, lambda e: None, b.nurse.request))
    led = b.factory.pin(LED)
    led.clear_states()
    switch = b.factory.pin(SWITCH)
    switch.drive_low()
    time.sleep(0.08)  # the patient's press
    switch.drive_high()
    b.wait(lambda: b.relay.state == 1, "the relay closes")
    b.wait(lambda: b.nurse.active and b.light.overlay, "the request is latched and shown")
    # The nurse pattern: three quick full-level flashes of 0.15 s, on top of idle's glow.
    b.wait(lambda: len(segments(led)) >= 2 * NURSE_FLASHES + 1, "three flashes")
    burst = segments(led)[: 2 * NURSE_FLASHES + 1]  # dark, then on/off three times
    flashes = [seconds for level, seconds in burst if level == 1.0]
    assert len(flashes) == NURSE_FLASHES, burst
    assert all(abs(s - NURSE_FLASH.on_s) < 0.1 for s in flashes), burst
    # Then the state's own pattern (idle's glow) shows between two bursts.
    b.wait(lambda: any(level == pytest.approx(0.1) for level, _ in segments(led)),
           "idle's glow between the bursts", timeout_s=5)
    # The call cue: alternating 988 and 784 Hz, the only cue with those notes.
    assert b.cues.played == ["nurse_call"]
    audio = b.cue_audio()
    spectrum = np.abs(np.fft.rfft(audio.astype(float)))
    freqs = np.fft.rfftfreq(len(audio), 1 / 24000)
    top = {round(freqs[i], -1) for i in np.argsort(spectrum)[-6:]}
    assert {990.0, 780.0} <= top or {990.0, 790.0} <= top, sorted(top)
    assert metric(b.metrics, "nurse_call_active") == 1
    assert metric(b.metrics, "nurse_call_relay_closed") == 1
    assert metric(b.metrics, "nurse_calls_total", source="switch") == 1
    # Latched: nothing opens it by itself.
    time.sleep(0.3)
    assert b.relay.state == 1 and b.nurse.active


def test_a_long_press_or_the_reset_input_resets_and_the_light_goes_back_to_the_state(bedside):
    b = bedside(reset_pin=RESET)
    b.nurse.start()
    b.parts.append(ResetInput(b.gpio, b.factory, b.nurse.reset))
    b.nurse.request("assistant")
    b.wait(lambda: b.relay.state == 1 and b.light.overlay, "latched")
    b.nurse.reset("long press")
    b.wait(lambda: b.relay.state == 0 and not b.light.overlay, "reset by a long press")
    led = b.factory.pin(LED)
    b.wait(lambda: led.state == pytest.approx(0.1), "idle's glow again")
    assert b.changes.seen[-1] == NurseCallChange(False, False, "long press")

    b.nurse.request("switch")
    b.wait(lambda: b.relay.state == 1, "latched again")
    reset = b.factory.pin(RESET)
    reset.drive_low()
    time.sleep(0.08)
    reset.drive_high()
    b.wait(lambda: b.relay.state == 0 and not b.nurse.active, "reset by the staff's input")
    assert b.changes.seen[-1].source == "reset input"
    assert metric(b.metrics, "nurse_calls_total", source="assistant") == 1
    assert metric(b.metrics, "nurse_calls_total", source="switch") == 1
    assert b.cues.played == ["nurse_call", "nurse_call"]


def test_hold_s_opens_the_contact_but_the_request_stays_shown_until_reset_after_s(bedside):
    b = bedside(hold_s=0.3, reset_after_s=1.0)
    b.nurse.start()
    started = time.monotonic()
    b.nurse.request("switch")
    b.wait(lambda: b.relay.state == 1, "closed")
    b.wait(lambda: b.relay.state == 0, "opened after hold_s")
    held = time.monotonic() - started
    assert 0.25 < held < 0.8, held
    assert b.nurse.active and b.light.overlay  # still shown: nobody reset it yet
    assert metric(b.metrics, "nurse_call_active") == 1
    assert metric(b.metrics, "nurse_call_relay_closed") == 0
    b.wait(lambda: not b.nurse.active, "reset by itself after reset_after_s")
    assert time.monotonic() - started >= 0.95
    assert b.changes.seen[-1].source == "timer"


def test_a_latched_request_survives_a_restart_and_is_read_back_closed(bedside, tmp_path,
                                                                      factory):
    first = bedside(state_dir=tmp_path)
    first.nurse.start()
    first.nurse.request("switch")
    first.wait(lambda: first.relay.state == 1, "closed")
    first.close()  # the service stops (or reloads): the relay is released
    assert factory.pin(RELAY).state == 0
    assert (tmp_path / "nurse-call-latched").exists()

    second = bedside(state_dir=tmp_path)
    second.nurse.start()
    assert second.relay.state == 1  # closed again at start, and read back so
    assert second.changes.seen == [NurseCallChange(True, True, "restored")]
    assert metric(second.metrics, "nurse_call_active") == 1
    assert metric(second.metrics, "nurse_call_relay_closed") == 1
    second.wait(lambda: second.light.overlay, "shown again")
    second.nurse.reset("long press")
    second.wait(lambda: second.relay.state == 0, "reset")
    assert not (tmp_path / "nurse-call-latched").exists()


class StuckLowPin(MockPWMPin):
    """A pin shorted to ground: whatever is written, it reads low."""

    def _change_state(self, value: object) -> bool:
        return False


def test_a_relay_that_reads_back_wrong_is_reported(bedside, factory):
    factory.pin(RELAY, pin_class=StuckLowPin)  # the wiring fault is there before the kiosk
    b = bedside()
    b.nurse.start()
    assert not b.problems  # open at start, as written
    assert b.nurse.request("switch") is True  # nothing known to be wrong yet
    b.wait(lambda: b.problems, "the mismatch is reported")
    assert "reads back open after being set closed" in b.problems[0]
    assert "GPIO22" in b.problems[0]
    assert not b.nurse.relay_ok and not b.nurse.contact_closed
    assert metric(b.metrics, "nurse_call_relay_closed") == 0
    assert b.nurse.active  # shown on the kiosk all the same
    assert b.nurse.request("assistant") is False  # the assistant is told it did not go out

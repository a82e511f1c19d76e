"""The night profile, measured: a whole kiosk (its assembly, the simulator in its own process,
the virtual speaker, mock pins) under a clock the test moves. Answer and cue levels are read
from the speaker recording, the light's PWM value from its pin: by day, at night before and
after midnight, and by day again; the switch to night in the middle of an answer leaves that
answer's level alone and quietens the next one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from kiosk import events as ev
from kiosk.assembly import Kiosk
from kiosk.audio.playback import volume_gain
from kiosk.audio.virtual import VirtualAudio
from kiosk.settings import (
    AudioSettings,
    GatewaySettings,
    GpioSettings,
    KioskSettings,
    NightSettings,
    Settings,
    VisitSettings,
)
from kiosk.sim import utterance
from kiosk.sim.remote import SimulatorProcess
from kiosk.states import State, StateChange

from .helpers import dominant_hz

pytestmark = [pytest.mark.audio, pytest.mark.slow]

DAY, NIGHT = (80, 60), (40, 20)  # (answer, cue) volume, percent
NIGHT_LED = 0.1


def db(ratio: float) -> float:
    return 20 * float(np.log10(ratio))


class Clock:
    """Local time that only moves when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class States:
    """A controller observer the test waits on."""

    def __init__(self) -> None:
        self.seen: list[State] = []
        self._cond = threading.Condition()

    def on_state_change(self, change: StateChange) -> None:
        with self._cond:
            self.seen.append(change.new)
            self._cond.notify_all()

    def wait(self, state: State, timeout_s: float = 20.0) -> None:
        """The next `state` after those already waited for."""
        with self._cond:
            start = len(self.seen) if not hasattr(self, "_cursor") else self._cursor
            ok = self._cond.wait_for(lambda: state in self.seen[start:], timeout_s)
            assert ok, f"no {state} within {timeout_s} s; seen {self.seen}"
            self._cursor = start + self.seen[start:].index(state) + 1


def runs(x: np.ndarray, threshold: int = 120, gap_s: float = 0.1) -> list[np.ndarray]:
    """The stretches of sound in a recording (answers and cues), in order."""
    idx = np.flatnonzero(np.abs(x.astype(np.int32)) > threshold)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap_s * 24000)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return [x[s:e] for s, e in zip(starts, ends, strict=True)]


def peak(x: np.ndarray) -> float:
    return float(np.max(np.abs(x.astype(np.int32))))


@pytest.fixture
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess() as sim:
        yield sim


@pytest.fixture
def kiosk(rig: VirtualAudio, sim: SimulatorProcess, tmp_path: Path
          ) -> Iterator[tuple[Kiosk, Clock, States]]:
    key = tmp_path / "key"
    key.write_text(sim.api_key)
    key.chmod(0o600)
    settings = Settings(
        kiosk=KioskSettings(id="night-bed"),
        gateway=GatewaySettings(url=sim.gateway_url, api_key_file=str(key),
                                retry_initial_s=0.2, retry_max_s=1.0),
        audio=VirtualAudio.audio_settings(AudioSettings(volume=DAY[0], cue_volume=DAY[1],
                                                        device_retry_s=0.5)),
        gpio=GpioSettings(pin_factory="mock", led_kind="pwm"),
        visit=VisitSettings(idle_timeout_s=60),
        night=NightSettings(start="22:00", end="07:00", volume=NIGHT[0], cue_volume=NIGHT[1],
                            led_brightness=NIGHT_LED))
    clock = Clock(datetime(2026, 3, 1, 12, 0))
    states = States()
    k = Kiosk(settings, [states], local_time=clock)
    k.start()
    try:
        yield k, clock, states
    finally:
        k.close()


def led_level(kiosk: Kiosk) -> float:
    return float(kiosk.light.device.pin.state)


def wait_led(kiosk: Kiosk, level: float, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while abs(led_level(kiosk) - level) > 1e-6:
        assert time.monotonic() < deadline, f"LED at {led_level(kiosk)}, not {level}"
        time.sleep(0.01)  # polling a pin with a deadline


def wait_quiet(kiosk: Kiosk, timeout_s: float = 5.0) -> None:
    """Until the speaker has nothing left to play (a chime heard out before the next step:
    ending a visit stops what the speaker still plays)."""
    deadline = time.monotonic() + timeout_s
    while kiosk.audio.playback.busy:
        assert time.monotonic() < deadline, "the speaker never went quiet"
        time.sleep(0.01)  # polling with a deadline


def ask(kiosk: Kiosk, rig: VirtualAudio, states: States) -> None:
    """The patient asks a question and hears the whole answer."""
    assert rig.play_into_mic(utterance(), 24000).wait(15)
    states.wait(State.SPEAKING)
    states.wait(State.LISTENING)


def test_volumes_and_light_by_day_at_night_across_midnight_and_mid_answer(kiosk, rig, sim):
    k, clock, states = kiosk
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    wait_led(k, 0.1)  # idle by day: the faint glow

    # Day: press (the chime at the day cue volume), the light solid at full level.
    k.press(ev.ButtonPressed(source="test"))
    states.wait(State.LISTENING)
    wait_led(k, 1.0)
    # A long answer streamed in real time; 0.7 s into it, the clock reaches 22:00.
    sim.knobs.answer_s, sim.knobs.stream_speed = 2.0, 1.0
    assert rig.play_into_mic(utterance(), 24000).wait(15)
    states.wait(State.SPEAKING)
    time.sleep(0.7)  # scenario timing: the answer is under way, still arriving
    clock.now = datetime(2026, 3, 1, 22, 0)
    assert k.night.refresh() is True
    states.wait(State.LISTENING)
    wait_led(k, NIGHT_LED)  # listening: solid, dimmed

    sim.knobs.answer_s, sim.knobs.stream_speed = 1.5, 4.0
    pin = k.light.device.pin
    pin.clear_states()
    ask(k, rig, states)  # night, before midnight
    # The speaking pulse (and everything else) stayed at the night's level.
    levels = [float(s.state) for s in pin.states]
    assert len(levels) > 10 and max(levels) == pytest.approx(NIGHT_LED)
    clock.now = datetime(2026, 3, 2, 0, 30)
    assert k.night.refresh() is True
    ask(k, rig, states)  # night, after midnight
    time.sleep(0.3)  # the patient thinks, then ends the visit (scenario timing)
    k.press(ev.ButtonPressed(source="test"))
    states.wait(State.IDLE)
    wait_led(k, 0.0)  # idle at night: dark
    wait_quiet(k)
    time.sleep(0.3)  # a pause between the end chime and the next press (scenario timing)
    k.press(ev.ButtonPressed(source="test"))  # the chime at the night's cue volume
    states.wait(State.LISTENING)
    wait_led(k, NIGHT_LED)
    wait_quiet(k)
    time.sleep(0.3)
    k.press(ev.ButtonPressed(source="test"))
    states.wait(State.IDLE)
    clock.now = datetime(2026, 3, 2, 7, 0)
    assert k.night.refresh() is False
    wait_led(k, 0.1)  # day again: idle glows
    time.sleep(0.6)  # let the last chime reach the recording
    audio = speaker.stop()

    sounds = runs(audio)
    answers = [s for s in sounds if len(s) > 1.0 * 24000]
    chimes = [s for s in sounds if 0.1 * 24000 < len(s) < 0.4 * 24000
              and dominant_hz(s, 24000) == pytest.approx(880, abs=40)]
    assert len(answers) == 3, [len(s) / 24000 for s in sounds]
    assert all(dominant_hz(a, 24000) == pytest.approx(220, rel=0.05) for a in answers)
    first, before_midnight, after_midnight = answers
    # The answer under way at 22:00 kept its level from its first word to its last ...
    half = len(first) // 2
    print(f"night profile: answer halves {db(peak(first[half:]) / peak(first[:half])):+.2f} dB;"
          f" night answers {db(peak(before_midnight) / peak(first)):+.2f} and "
          f"{db(peak(after_midnight) / peak(first)):+.2f} dB; chimes "
          f"{db(peak(chimes[-1]) / peak(chimes[0])):+.2f} dB")
    assert abs(db(peak(first[half:]) / peak(first[:half]))) < 1.0
    # ... and the next ones were capped at the night's volume, before and after midnight.
    expected = db(volume_gain(NIGHT[0]) / volume_gain(DAY[0]))  # -12 dB
    assert db(peak(before_midnight) / peak(first)) == pytest.approx(expected, abs=1.5)
    assert db(peak(after_midnight) / peak(first)) == pytest.approx(expected, abs=1.5)
    # The press chimes: by day at the day's cue volume, at night capped (about -19 dB).
    assert len(chimes) == 2, [(len(s) / 24000, dominant_hz(s, 24000)) for s in sounds]
    day_chime, night_chime = chimes
    expected = db(volume_gain(NIGHT[1]) / volume_gain(DAY[1]))
    assert db(peak(night_chime) / peak(day_chime)) == pytest.approx(expected, abs=1.5)

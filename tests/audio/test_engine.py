"""The engine survives unplugged devices: missing at start, removed mid-stream, replugged."""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable

import numpy as np
import pytest

from kiosk.audio.engine import AudioEngine
from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE, VirtualAudio
from kiosk.settings import AudioSettings

from .helpers import dominant_hz, loud_part, tone

pytestmark = pytest.mark.audio

SETTINGS = VirtualAudio.audio_settings(AudioSettings(device_retry_s=0.2))


@pytest.fixture
def engine_events():
    events: queue.Queue = queue.Queue()
    engines: list[AudioEngine] = []

    def make(settings: AudioSettings = SETTINGS,
             at_rest: Callable[[], object] | None = None) -> AudioEngine:
        engine = AudioEngine(settings, listener=lambda kind, msg: events.put((kind, msg)),
                             at_rest=at_rest)
        engines.append(engine)
        return engine

    yield make, events
    for engine in engines:
        engine.stop()


def wait_for(events: queue.Queue, kind: str, timeout_s: float = 15.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        got, msg = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if got == kind:
            return msg


def hears_tone(rig, engine: AudioEngine, freq_hz: float = 900.0) -> bool:
    """Arm the engine's capture, play a tone into the mic and check it comes out."""
    cap = engine.capture
    cap.arm()
    feed = rig.play_into_mic(tone(freq_hz, 0.6), 24000)
    frames = []
    deadline = time.monotonic() + 10
    while len(frames) < 45 and time.monotonic() < deadline:
        f = cap.read_frame(timeout_s=0.5)
        if f is not None:
            frames.append(f.pcm)
    feed.wait(10)
    cap.disarm()
    body = loud_part(np.concatenate(frames)) if frames else []
    return len(body) > 4800 and abs(dominant_hz(body, 24000) - freq_hz) < 5


def test_starts_and_is_alive(rig, engine_events):
    make, events = engine_events
    engine = make()
    assert engine.start()
    deadline = time.monotonic() + 10
    while not engine.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.alive()
    assert hears_tone(rig, engine)


def test_missing_mic_at_start_is_reported_and_recovers_when_plugged(rig, engine_events):
    make, events = engine_events
    rig.remove_mic()
    try:
        engine = make()
        assert engine.start() is False
        msg = wait_for(events, "lost", 5)
        assert MIC_DEVICE in msg and SPEAKER_DEVICE in msg  # names it, lists what exists
        assert not engine.alive()
    finally:
        rig.restore_mic()
    wait_for(events, "ready")
    assert hears_tone(rig, engine)


def test_mic_removed_mid_stream_goes_lost_then_recovers(rig, engine_events):
    make, events = engine_events
    engine = make()
    assert engine.start()
    engine.capture.arm()  # a visit: the streams run
    rig.remove_mic()
    try:
        msg = wait_for(events, "lost")
        assert MIC_DEVICE in msg
        assert not engine.alive()
    finally:
        rig.restore_mic()
    wait_for(events, "ready")
    assert hears_tone(rig, engine)


def test_speaker_removed_mid_stream_alive_goes_false_then_recovers(rig, engine_events):
    make, events = engine_events
    engine = make()
    assert engine.start()
    engine.playback.write("long", tone(300.0, 10.0).tobytes())  # an answer: the speaker runs
    deadline = time.monotonic() + 5
    while not engine.playback.stream_active():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    rig.remove_speaker()
    try:
        deadline = time.monotonic() + 10
        while engine.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not engine.alive(), "callbacks stopped but alive() stayed true"
        assert SPEAKER_DEVICE in wait_for(events, "lost")
    finally:
        rig.restore_speaker()
    wait_for(events, "ready")
    deadline = time.monotonic() + 10
    while not engine.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.alive()
    rec = rig.record_speaker()
    assert rec.wait_ready()
    engine.playback.write("after", tone(300.0, 0.4).tobytes())
    engine.playback.end_item("after")
    deadline = time.monotonic() + 10
    while engine.playback.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    target = len(rec.samples()) + 4800
    while len(rec.samples()) < target and time.monotonic() < deadline:
        time.sleep(0.02)
    body = loud_part(rec.stop())
    assert dominant_hz(body, 24000) == pytest.approx(300.0, abs=3)


def test_missing_named_device_lists_what_exists(rig, engine_events):
    make, events = engine_events
    engine = make(AudioSettings(input_device="No Such USB Mic", output_device=SPEAKER_DEVICE,
                                device_retry_s=5))
    assert engine.start() is False
    msg = wait_for(events, "lost", 5)
    assert "'No Such USB Mic'" in msg and "audio.input_device" in msg and MIC_DEVICE in msg


@pytest.mark.parametrize("port,method", [("capture", "_keep"), ("playback", "_render")])
def test_an_exception_in_a_callback_is_logged_counted_and_reopens_the_streams(
        rig, engine_events, caplog, monkeypatch, port: str, method: str):
    """PortAudio swallows what a callback raises: the engine must not. The first exception is
    logged with its traceback and counted; when the callback keeps failing the streams are
    reported lost (the kiosk shows error: device) and reopened; then the audio works again."""
    make, events = engine_events
    engine = make()
    assert engine.start()
    target = getattr(engine, port)
    real = getattr(target, method)
    failing = {"on": True}

    def broken(*args, **kwargs):
        if failing["on"]:
            raise ZeroDivisionError("injected into the audio callback")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, method, broken)
    if port == "capture":
        engine.capture.arm()  # the capture callback only does work while armed
    lost = wait_for(events, "lost")
    assert "callback keeps failing (ZeroDivisionError: injected" in lost
    first = [r for r in caplog.records if "callback raised ZeroDivisionError" in r.getMessage()]
    assert len(first) == 1 and first[0].exc_info is not None  # once, with its traceback
    assert engine.callback_errors >= 3
    failing["on"] = False
    wait_for(events, "ready")  # reopened by the supervisor
    deadline = time.monotonic() + 5
    while not engine.alive():  # both callbacks running again
        assert time.monotonic() < deadline, "the reopened streams do not run"
        time.sleep(0.05)
    assert hears_tone(rig, engine)


def test_the_supervisor_survives_its_own_errors(rig, engine_events, monkeypatch, caplog):
    make, events = engine_events
    engine = make()
    assert engine.start()
    calls = {"n": 0}
    real = engine._health_problem

    def flaky() -> str | None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a bug in the supervisor")
        return real()

    monkeypatch.setattr(engine, "_health_problem", flaky)
    assert "a bug in the supervisor" in wait_for(events, "lost")
    wait_for(events, "ready")
    assert engine.supervisor_alive()
    assert any("audio supervisor: unexpected error" in r.getMessage() for r in caplog.records)


def callbacks(engine: AudioEngine) -> int:
    return engine.capture.callbacks + engine.playback.callbacks


def test_idle_streams_are_paused_and_a_press_resumes_them(rig, engine_events):
    """Idle costs nothing: no visit and nothing playing pauses both streams (the devices stay
    open, alive() stays true); the chime and the armed microphone bring them back."""
    make, events = engine_events
    engine = make()
    assert engine.start()
    deadline = time.monotonic() + 10
    while not engine.paused:
        assert time.monotonic() < deadline, "the idle streams were never paused"
        time.sleep(0.05)
    before = callbacks(engine)
    time.sleep(0.5)  # a window in which a running stream would call back 25 times
    assert callbacks(engine) == before and engine.alive()
    rec = rig.record_speaker()
    assert rec.wait_ready()
    engine.playback.play_cue(tone(1000.0, 0.3))  # the chime at a press
    deadline = time.monotonic() + 5
    while not loud_part(rec.samples()).size:
        assert time.monotonic() < deadline, "the chime was not played after a pause"
        time.sleep(0.02)
    rec.stop()
    assert hears_tone(rig, engine)  # arming the microphone resumed the input too


def test_each_rest_is_reported_once_after_portaudio_is_shut_down(rig, engine_events):
    """`at_rest` (the daemon's malloc_trim) runs once per rest, on the supervisor's thread,
    after PortAudio is gone: not at every poll while resting, not while a stream runs."""
    make, _ = engine_events
    rests: queue.Queue = queue.Queue()
    engine = make(at_rest=lambda: rests.put(engine._pa is None))
    assert engine.start()
    assert rests.get(timeout=10) is True  # idle after start: both streams closed
    engine.playback.play_cue(tone(1000.0, 0.2))  # a chime opens the speaker again
    assert rests.get(timeout=10) is True  # and once it has played out, rest again
    time.sleep(1.0)  # ~4 supervisor polls at rest, none reported again
    assert rests.empty()


def test_a_device_unplugged_while_paused_is_found_at_the_next_visit(rig, engine_events):
    make, events = engine_events
    engine = make()
    assert engine.start()
    deadline = time.monotonic() + 10
    while not engine.paused:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rig.remove_mic()
    try:
        engine.capture.arm()  # a press
        assert MIC_DEVICE in wait_for(events, "lost")
    finally:
        rig.restore_mic()
        engine.capture.disarm()
    wait_for(events, "ready")
    assert hears_tone(rig, engine)


def _wait(predicate, what: str, timeout_s: float = 10.0) -> float:
    """Wait for `predicate()`; returns when it became true (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
    return time.monotonic()


def _answer(engine: AudioEngine, seconds: float) -> None:
    """A whole answer queued at once, as the service sends it (faster than it plays)."""
    engine.playback.write("item_answer", tone(440.0, seconds, amplitude=0.1).tobytes())
    engine.playback.end_item("item_answer")


def test_with_the_echo_gate_the_microphone_rests_during_an_answer_and_is_back_before_it_ends(
        rig, engine_events):
    """The gate drops what the microphone hears while the kiosk speaks, so its stream closes
    while seconds of answer are queued, and runs again before the answer ends: the first
    words after it are heard."""
    make, _ = engine_events
    engine = make()
    assert engine.start()
    engine.capture.arm()  # a visit
    _wait(lambda: engine.capture.is_open, "the armed microphone did not open")
    _answer(engine, 6.0)
    _wait(lambda: not engine.capture.is_open, "the microphone kept running under the gate")
    assert engine.playback.ahead_s >= 1.5  # rested with seconds of answer still to play
    _wait(lambda: engine.capture.is_open, "the microphone did not come back", 10.0)
    left = engine.playback.ahead_s
    assert engine.playback.busy and left > 0.3, f"back only {left:.2f} s before the end"
    _wait(lambda: not engine.playback.busy, "the answer did not end", 10.0)
    assert engine.capture.is_open and engine.alive()
    assert hears_tone(rig, engine)


def test_a_flushed_answer_brings_the_resting_microphone_back_at_once(rig, engine_events):
    make, _ = engine_events
    engine = make()
    assert engine.start()
    engine.capture.arm()
    _wait(lambda: engine.capture.is_open, "the armed microphone did not open")
    _answer(engine, 8.0)
    _wait(lambda: not engine.capture.is_open, "the microphone kept running under the gate")
    flushed = time.monotonic()
    engine.playback.flush()  # the patient pressed the button to interrupt
    back = _wait(lambda: engine.capture.is_open, "the microphone did not come back", 2.0)
    assert back - flushed < 0.2  # woken by the flush, not by the next 0.25 s look


def test_without_the_gate_the_microphone_keeps_running_through_an_answer(rig, engine_events):
    """echo_mode none (and aec): the patient may interrupt by voice, so the mic never rests."""
    make, _ = engine_events
    engine = make(dataclasses.replace(SETTINGS, echo_mode="none"))
    assert engine.start()
    engine.capture.arm()
    _wait(lambda: engine.capture.is_open, "the armed microphone did not open")
    _answer(engine, 3.5)
    _wait(lambda: engine.playback.busy, "the answer did not start")
    while engine.playback.busy:
        assert engine.capture.is_open, "the microphone rested although the patient may speak"
        time.sleep(0.05)


@pytest.mark.parametrize("echo_mode", ["aec", "gate"])
def test_with_the_canceller_both_streams_stay_open_between_visits(rig, engine_events,
                                                                   echo_mode):
    """With the canceller, one output and one input stream from start to stop: a new stream
    moves the echo, which the canceller would have to follow during the next answer. The
    microphone keeps nothing between visits. With the gate, both close once nothing needs
    them, and idle costs nothing."""
    make, _ = engine_events
    engine = make(dataclasses.replace(SETTINGS, echo_mode=echo_mode))
    assert engine.start()
    assert engine.echo.effective == echo_mode
    engine.capture.arm()  # a visit
    engine.playback.play_cue(tone(1000.0, 0.3))  # the chime at the press
    _wait(lambda: engine.playback.is_open, "the speaker did not open for the chime")
    _wait(lambda: not engine.playback.busy, "the chime did not end")
    engine.capture.disarm()  # the visit ends
    if echo_mode == "gate":
        _wait(lambda: engine.paused, "the idle streams were not closed", 5.0)
        return
    until = time.monotonic() + engine.idle_grace_s + 1.0  # past the grace and a few looks
    while time.monotonic() < until:
        assert engine.playback.is_open and not engine.paused, "the speaker stream closed"
        assert engine.capture.is_open, "the microphone stream closed"
        time.sleep(0.05)
    assert not engine.capture.armed
    assert engine.capture.read_frame(0.3) is None  # nothing kept between visits

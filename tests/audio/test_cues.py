"""Cues are distinct, follow the kiosk's states, and play through the answer output."""

from __future__ import annotations

import itertools
import queue
import threading
import time
import wave

import numpy as np
import pytest

from kiosk.audio.cues import CUE_NAMES, CuePlayer, synthesize
from kiosk.audio.devices import find_device, open_portaudio
from kiosk.audio.playback import Playback
from kiosk.audio.virtual import SPEAKER_DEVICE
from kiosk.settings import AudioSettings
from kiosk.states import State, StateChange

from .helpers import dominant_hz, loud_part, tone


class RecordingPlayback:
    """A fake Playback beside the real one: remembers which sounds were asked for."""

    def __init__(self) -> None:
        self.cues: queue.Queue = queue.Queue()

    def play_cue(self, pcm: np.ndarray, gain: float = 1.0) -> None:
        self.cues.put((pcm, gain))


def change(old: State, new: State) -> StateChange:
    return StateChange(old=old, new=new, detail="test", visit_id="s1", at=time.monotonic())


def fingerprint(pcm: np.ndarray, segments: int = 20) -> np.ndarray:
    """Normalised spectrogram: 40 ms segments x 50 Hz bins up to 3 kHz, padded to 0.8 s."""
    x = np.zeros(segments * 960)
    x[:len(pcm)] = pcm
    spec = np.abs(np.fft.rfft(x.reshape(segments, 960) * np.hanning(960), n=24000))[:, :3000]
    bins = spec.reshape(segments, -1, 50).sum(axis=2).reshape(-1)
    return bins / np.linalg.norm(bins)


def test_cues_are_short_and_distinct():
    sounds = {name: synthesize(name) for name in CUE_NAMES}
    for name, pcm in sounds.items():
        # The nurse call signal (four notes, outside the conversation's rhythm) may be a
        # little longer than the state cues, which must never hold up speech.
        longest_s = 0.7 if name == "nurse_call" else 0.6
        assert 0.03 < len(pcm) / 24000 < longest_s, name
        assert np.abs(pcm[:10]).max() < 2000 and np.abs(pcm[-10:]).max() < 2000  # faded
    for a, b in itertools.combinations(CUE_NAMES, 2):
        similarity = float(fingerprint(sounds[a]) @ fingerprint(sounds[b]))
        assert similarity < 0.5, (a, b, similarity)
    # listening rises, ended falls
    lis, end = sounds["listening"], sounds["ended"]
    assert dominant_hz(lis[:2000], 24000) < dominant_hz(lis[-2500:], 24000)
    assert dominant_hz(end[:2000], 24000) > dominant_hz(end[-2500:], 24000)


def test_state_changes_pick_the_right_cue():
    fake = RecordingPlayback()
    cues = CuePlayer(fake, AudioSettings(cue_volume=100))  # type: ignore[arg-type]
    steps = [
        (State.IDLE, State.CONNECTING, "listening"),  # the press: speak now
        (State.CONNECTING, State.LISTENING, None),
        (State.LISTENING, State.THINKING, None),
        (State.THINKING, State.SPEAKING, None),
        (State.SPEAKING, State.IDLE, "ended"),
        (State.IDLE, State.ERROR, "error"),
        (State.ERROR, State.CONNECTING, "listening"),  # a press right after an error
    ]
    try:
        for old, new, expected in steps:
            cues.on_state_change(change(old, new))
            if expected:
                pcm, gain = fake.cues.get_nowait()
                assert np.array_equal(pcm, synthesize(expected)) and gain == 1.0
            assert fake.cues.empty(), (old, new)
        assert cues.played == ["listening", "ended", "error", "listening"]
    finally:
        cues.close()


def test_connecting_cue_repeats_while_connecting_and_stops_after():
    fake = RecordingPlayback()
    cues = CuePlayer(fake, AudioSettings())  # type: ignore[arg-type]
    cues.connecting_repeat_s = 0.1
    try:
        cues.on_state_change(change(State.IDLE, State.CONNECTING))
        pcm, _ = fake.cues.get(timeout=5)
        assert np.array_equal(pcm, synthesize("listening"))  # at the press
        for _ in range(2):
            pcm, _ = fake.cues.get(timeout=5)
            assert np.array_equal(pcm, synthesize("connecting"))
        cues.on_state_change(change(State.CONNECTING, State.LISTENING))
        while not fake.cues.empty():  # a tick may have raced the change
            fake.cues.get_nowait()
        with pytest.raises(queue.Empty):
            fake.cues.get(timeout=0.5)  # five repeat intervals: no further tick
    finally:
        cues.close()


def test_cues_off_and_wav_override(tmp_path):
    fake = RecordingPlayback()
    CuePlayer(fake, AudioSettings(cues=False)).play("error")  # type: ignore[arg-type]
    assert fake.cues.empty()
    path = tmp_path / "ding.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        mono = tone(1500, 0.2, rate_hz=48000)
        w.writeframes(np.stack([mono, mono], axis=1).tobytes())
    cues = CuePlayer(fake, AudioSettings(cue_files={"listening": str(path),  # type: ignore
                                                    "ended": str(tmp_path / "missing.wav")}))
    assert len(cues.sounds["listening"]) == pytest.approx(4800, abs=2)
    assert dominant_hz(cues.sounds["listening"], 24000) == pytest.approx(1500, abs=3)
    assert np.array_equal(cues.sounds["ended"], synthesize("ended"))  # broken file: built-in


@pytest.mark.audio
def test_cue_plays_through_the_speaker_and_keeps_busy_true(rig):
    pa = open_portaudio()
    out = Playback(AudioSettings())
    out.open(pa, find_device(pa, SPEAKER_DEVICE, "output"))
    cues = CuePlayer(out, AudioSettings(cue_volume=100))
    try:
        rec = rig.record_speaker()
        assert rec.wait_ready()
        seen_busy = threading.Event()
        cues.play("listening")
        if out.busy:
            seen_busy.set()
        deadline = time.monotonic() + 10
        while out.busy and time.monotonic() < deadline:
            time.sleep(0.01)  # bounded poll until the cue has played out
        assert seen_busy.is_set() and not out.busy
        target = len(rec.samples()) + 4800
        while len(rec.samples()) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        audio = loud_part(rec.stop(), threshold=300, margin_s=0.0)
        assert 0.15 < len(audio) / 24000 < 0.3  # the 0.19 s chime
        assert dominant_hz(audio[:1500], 24000) == pytest.approx(660, abs=10)
        assert dominant_hz(audio[-2000:], 24000) == pytest.approx(880, abs=10)
    finally:
        out.shutdown()
        pa.terminate()

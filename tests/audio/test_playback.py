"""Answer audio played through the virtual speaker is recorded back from its monitor."""

from __future__ import annotations

import queue
import time

import numpy as np
import pytest

from kiosk.audio.devices import find_device, open_portaudio
from kiosk.audio.playback import Playback
from kiosk.audio.virtual import SPEAKER_DEVICE
from kiosk.settings import AudioSettings

from .helpers import dominant_hz, loud_part, rms_dbfs, tone

pytestmark = pytest.mark.audio


@pytest.fixture
def speaker(rig):
    pa = open_portaudio()
    out = Playback(AudioSettings(volume=100, prebuffer_ms=60))
    events: queue.Queue = queue.Queue()
    out.set_listener(lambda kind, item: events.put((kind, item)))
    out.open(pa, find_device(pa, SPEAKER_DEVICE, "output"))
    try:
        yield out, events
    finally:
        out.shutdown()
        pa.terminate()


def record_more(rec, seconds: float, timeout_s: float = 10.0) -> None:
    """Wait until the recorder has `seconds` more audio (the speaker's tail reached it)."""
    target = len(rec.samples()) + int(seconds * 24000)
    deadline = time.monotonic() + timeout_s
    while len(rec.samples()) < target and time.monotonic() < deadline:
        time.sleep(0.02)  # polling a growing recording, bounded by the deadline


def next_event(events: queue.Queue, timeout_s: float = 10.0) -> tuple[str, str]:
    return events.get(timeout=timeout_s)


def test_tone_played_is_recorded_with_its_frequency_and_level(rig, speaker):
    out, events = speaker
    rec = rig.record_speaker()
    assert rec.wait_ready()
    pcm = tone(440.0, 1.0, amplitude=0.5)
    for chunk in np.array_split(pcm, 25):  # deltas arrive in pieces
        out.write("item_a", chunk.tobytes())
    out.end_item("item_a")
    assert out.busy
    assert next_event(events) == ("started", "item_a")
    assert next_event(events) == ("drained", "item_a")
    record_more(rec, 0.4)
    audio = rec.stop()
    body = loud_part(audio)
    assert len(body) > 0.7 * 24000
    assert dominant_hz(body, 24000) == pytest.approx(440.0, abs=2)
    assert rms_dbfs(body) == pytest.approx(-9.03, abs=1.0)
    assert out.played_ms("item_a") == 1000
    # Played once, whole: no gap of silence inside the tone.
    assert len(loud_part(audio, margin_s=0)) == pytest.approx(24000, abs=24 * 30)


def test_flush_silences_within_one_block_and_reports_ms_played(rig, speaker):
    out, events = speaker
    rec = rig.record_speaker()
    assert rec.wait_ready()
    out.write("item_b", tone(600.0, 5.0, amplitude=0.5).tobytes())
    assert next_event(events) == ("started", "item_b")
    deadline = time.monotonic() + 10
    while out.played_ms("item_b") < 500 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a counter with a deadline, not waiting for time to pass
    played = out.flush()
    assert next_event(events) == ("flushed", "item_b")
    assert 500 <= played < 5000
    assert out.played_ms("item_b") == played
    out.write("item_b", tone(600.0, 1.0).tobytes())  # late deltas of a flushed item: ignored
    assert not out.busy or out.played_ms("item_b") == played
    record_more(rec, 1.0)  # what follows the flush must be silence
    audio = rec.stop()
    body = loud_part(audio, margin_s=0)
    tone_ms = len(body) * 1000 / 24000
    # What came out is what was counted as played, within one 20 ms block (+ 5 ms fade).
    assert tone_ms == pytest.approx(played, abs=30)
    assert np.abs(audio[-12000:].astype(np.int32)).max() < 50


def test_short_item_below_prebuffer_plays_when_ended(rig, speaker):
    out, events = speaker
    out.write("item_c", tone(800.0, 0.03).tobytes())  # 30 ms < 60 ms prebuffer
    out.end_item("item_c")
    assert next_event(events) == ("started", "item_c")
    assert next_event(events) == ("drained", "item_c")
    assert out.played_ms("item_c") == 30


def test_underrun_plays_silence_and_is_counted(rig, speaker):
    out, events = speaker
    out.write("item_d", tone(500.0, 0.1).tobytes())
    assert next_event(events) == ("started", "item_d")
    deadline = time.monotonic() + 10
    while out.underruns == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.underruns > 0
    assert out.busy  # an unfinished item keeps the echo gate closed
    out.write("item_d", tone(500.0, 0.1).tobytes())
    out.end_item("item_d")
    assert next_event(events) == ("drained", "item_d")
    assert out.played_ms("item_d") == 200

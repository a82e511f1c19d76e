"""Playback's callback driven directly (no device): fades, volume, flush, device rate."""

from __future__ import annotations

import numpy as np
import pytest

from kiosk.audio.playback import Playback
from kiosk.settings import AudioSettings

from .helpers import dominant_hz, tone


def pull(out: Playback, blocks: int) -> np.ndarray:
    """Run the output callback `blocks` times like PortAudio would; return what it gave."""
    block = out.device_rate_hz // 50
    got = []
    for _ in range(blocks):
        data, flag = out.callback(None, block, {}, 0)
        got.append(np.frombuffer(data, np.int16).reshape(-1, out.channels)[:, 0])
    return np.concatenate(got)


@pytest.fixture
def out():
    p = Playback(AudioSettings(volume=100, prebuffer_ms=40))
    p.prepare(24000, 1)
    yield p
    p.shutdown()


def test_prebuffer_then_fade_in_without_click(out):
    out.write("a", tone(1000, 0.02, amplitude=0.5).tobytes())  # 20 ms < 40 ms prebuffer
    assert not np.any(pull(out, 2)), "started before the prebuffer was full"
    out.write("a", tone(1000, 0.5, amplitude=0.5).tobytes())
    audio = pull(out, 5)
    first = np.flatnonzero(audio)[0]
    ramp = np.abs(audio[first:first + 120].astype(int))
    assert ramp[:12].max() < 2000  # the first 0.5 ms is still quiet: no step
    assert ramp[-40:].max() > 10000


def test_end_fades_out_and_counts_exactly(out):
    out.write("a", np.full(2400, 20000, np.int16).tobytes())  # a DC block: worst case click
    out.end_item("a")
    audio = pull(out, 8)
    nz = np.flatnonzero(audio)
    assert audio[nz[-1]] < 2000, "item end is cut without a fade"
    assert out.played_ms("a") == 100


def test_flush_ramps_to_silence_within_one_block_and_never_waits(out, monkeypatch):
    out.write("a", np.full(24000, 20000, np.int16).tobytes())
    pull(out, 5)
    monkeypatch.setattr(out, "stream_active", lambda: True)  # as while a stream runs
    assert out.flush() == 100  # returns at once: what was heard when the patient spoke
    audio = pull(out, 2)  # the callback does the rest
    assert audio[0] > 15000 and audio[119] < 300  # 5 ms ramp down, then
    assert not np.any(audio[120:])  # silence for the rest of this block and after
    assert not np.any(pull(out, 3))


def test_audio_written_right_after_a_flush_still_plays(out, monkeypatch):
    out.write("a", np.full(24000, 20000, np.int16).tobytes())
    pull(out, 5)
    monkeypatch.setattr(out, "stream_active", lambda: True)
    out.flush()
    out.write("b", np.full(4800, 8000, np.int16).tobytes())  # before the callback ran
    out.end_item("b")
    audio = pull(out, 12)
    assert np.count_nonzero(np.abs(audio) > 7000) > 4000  # "b" was not flushed with "a"
    assert out.played_ms("b") == 200


def test_volume_scales_the_answer(out):
    out.set_volume(50)  # squared law: a quarter of the amplitude
    out.write("a", np.full(4800, 20000, np.int16).tobytes())
    audio = pull(out, 5)
    assert audio[1000] == pytest.approx(5000, abs=2)


def test_48k_stereo_device_gets_resampled_audio_on_both_channels():
    p = Playback(AudioSettings(volume=100, prebuffer_ms=0))
    p.prepare(48000, 2)
    try:
        p.write("a", tone(750, 0.5).tobytes())
        p.end_item("a")
        block = 960
        frames = [np.frombuffer(p.callback(None, block, {}, 0)[0], np.int16).reshape(-1, 2)
                  for _ in range(30)]
        stereo = np.concatenate(frames)
        assert np.array_equal(stereo[:, 0], stereo[:, 1])
        body = stereo[2000:20000, 0]
        assert dominant_hz(body, 48000) == pytest.approx(750, abs=2)
        assert p.played_ms("a") == 500
    finally:
        p.shutdown()

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


class Reference:
    """What the echo canceller is handed by the callback: every block and its DAC time."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.times: list[float] = []

    def __call__(self, mono: np.ndarray, dac_time: float) -> None:
        self.blocks.append(mono.copy())  # the callback reuses its buffers
        self.times.append(dac_time)


def test_the_reference_is_exactly_what_was_rendered_with_its_dac_time(out):
    ref = Reference()
    out.set_reference(ref)
    out.write("a", tone(1000, 0.2, amplitude=0.5).tobytes())
    out.end_item("a")
    latency = {"current_time": 10.0, "output_buffer_dac_time": 10.05}
    played = []
    for _ in range(20):
        data, _ = out.callback(None, 480, latency, 0)
        played.append(np.frombuffer(data, np.int16).copy())
    # Same samples, same blocks, silence included (zeros once the answer is over).
    assert len(ref.blocks) == 20
    for heard, given in zip(ref.blocks, played, strict=True):
        assert np.array_equal(heard, given)
    assert not ref.blocks[-1].any() and np.concatenate(ref.blocks).any()
    # Each block leaves the speaker the reported output latency after its callback.
    assert all(b - a >= 0 for a, b in zip(ref.times, ref.times[1:], strict=False))
    assert out.last_callback_at + 0.05 == pytest.approx(ref.times[-1], abs=1e-6)


def test_the_reference_of_a_48k_stereo_device_is_mono_at_24k():
    p = Playback(AudioSettings(volume=100, prebuffer_ms=0))
    p.prepare(48000, 2)
    ref = Reference()
    p.set_reference(ref)
    try:
        p.write("a", tone(750, 0.5).tobytes())
        p.end_item("a")
        for _ in range(30):
            p.callback(None, 960, {}, 0)
        mono = np.concatenate(ref.blocks)
        # Half the device's samples per block once the resampler is primed (its own delay,
        # 5 ms, is well inside the canceller's 20 ms lead).
        assert [len(b) for b in ref.blocks[2:]] == [480] * 28
        assert 30 * 480 - len(mono) <= 240
        assert dominant_hz(mono[2000:10000], 24000) == pytest.approx(750, abs=2)
    finally:
        p.shutdown()

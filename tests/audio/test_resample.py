"""The streaming resampler matches whole-signal resampling and preserves frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.audio.resample import StreamResampler, downmix_into

from .helpers import dominant_hz, rms_dbfs, tone


@settings(max_examples=40, deadline=None)
@given(rate=st.sampled_from([48000, 44100, 16000, 32000]),
       freq=st.floats(100, 3000),
       cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=12))
def test_chunked_stream_equals_whole_signal(rate, freq, cuts):
    signal = tone(freq, 0.5, rate_hz=rate, amplitude=0.4)
    rs = StreamResampler(rate, 24000, quality="HQ")
    pieces, pos = [], 0
    for c in cuts:
        pieces.append(rs.process(signal[pos:pos + c]))
        pos += c
    pieces.append(rs.process(signal[pos:], last=True))
    chunked = np.concatenate(pieces)
    whole = soxr.resample(signal, rate, 24000, quality="HQ")
    assert abs(len(chunked) - len(whole)) <= 2
    n = min(len(chunked), len(whole))
    diff = np.abs(chunked[:n].astype(np.int32) - whole[:n].astype(np.int32))
    assert diff.max() <= 2  # rounding only: chunking changes nothing audible


@settings(max_examples=30, deadline=None)
@given(rate=st.sampled_from([48000, 44100, 16000]), freq=st.floats(200, 7000),
       block=st.integers(100, 2000))
def test_capture_quality_keeps_sine_frequency_and_length(rate, freq, block):
    signal = tone(freq, 1.0, rate_hz=rate, amplitude=0.5)
    rs = StreamResampler(rate, 24000, steady=True)  # the capture path's engine
    out = np.concatenate([rs.process(signal[i:i + block]) for i in range(0, len(signal), block)]
                         + [rs.process(signal[:0], last=True)])
    assert len(out) == pytest.approx(24000, abs=2)
    assert dominant_hz(out[2000:-2000], 24000) == pytest.approx(freq, rel=0.002, abs=1)


def test_equal_rates_pass_through_untouched():
    rs = StreamResampler(24000, 24000)
    x = tone(440, 0.1)
    assert rs.passthrough and rs.process(x) is x and rs.held_out_samples == 0


def test_downmix_averages_channels_without_allocating_output():
    left = np.array([100, -200, 32767, -32768], np.int16)
    right = np.array([300, 200, 32767, -32768], np.int16)
    inter = np.stack([left, right], axis=1).reshape(-1)
    out, scratch = np.zeros(8, np.int16), np.zeros(8, np.int32)
    mono = downmix_into(inter, 2, out, scratch)
    assert mono.tolist() == [200, 0, 32767, -32768]
    assert np.shares_memory(mono, out)


@settings(max_examples=40, deadline=None)
@given(rate=st.sampled_from([48000, 44100, 32000, 16000, 96000]),
       cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=15),
       seed=st.integers(0, 2**31))
def test_steady_stream_never_holds_audio_back_and_ignores_chunking(rate, cuts, seed):
    """The microphone's resampler: whatever the chunking, it never keeps more than ~15 ms
    of converted audio to itself (the fixed-rate presets keep up to ~20 ms lumps), its own
    account of what it holds is exact, and the result is the same as one whole call."""
    noise = np.random.default_rng(seed).normal(0, 3000, 2 * rate).astype(np.int16)
    rs = StreamResampler(rate, 24000, steady=True)
    pieces, pos = [], 0
    for c in cuts:
        chunk = noise[pos:pos + c]
        pieces.append(rs.process(chunk))
        pos += len(chunk)
        produced = sum(len(x) for x in pieces)
        owed = pos * 24000 / rate - produced
        assert rs.held_out_samples == pytest.approx(max(0.0, owed))
        assert owed <= 0.015 * 24000
    pieces.append(rs.process(noise[pos:], last=True))
    whole = StreamResampler(rate, 24000, steady=True)
    reference = whole.process(noise, last=True)
    chunked = np.concatenate(pieces)
    assert len(chunked) == len(reference)
    assert np.abs(chunked.astype(np.int32) - reference).max() <= 2  # rounding only


@pytest.mark.parametrize("rate", [48000, 44100])
def test_steady_stream_is_flat_to_11k_and_rejects_aliases(rate):
    """Downsampling must not fold 12-24 kHz content back into the speech band."""
    def level(freq: float) -> float:
        out = StreamResampler(rate, 24000, steady=True).process(
            tone(freq, 0.5, rate_hz=rate, amplitude=0.5), last=True)
        return rms_dbfs(out[1200:-1200]) - rms_dbfs(tone(freq, 0.5, rate_hz=rate))

    for freq in (300.0, 3000.0, 8000.0, 11000.0):
        assert level(freq) == pytest.approx(0.0, abs=0.2), f"{freq} Hz is not passed flat"
    for freq in (13000.0, 16000.0, 20000.0):
        assert level(freq) < -60.0, f"{freq} Hz aliases into the output"

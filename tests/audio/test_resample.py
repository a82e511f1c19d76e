"""The streaming resampler matches whole-signal resampling and preserves frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.audio.resample import StreamResampler, downmix_into

from .helpers import dominant_hz, tone


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
    rs = StreamResampler(rate, 24000)  # the capture path's low-latency preset
    out = np.concatenate([rs.process(signal[i:i + block]) for i in range(0, len(signal), block)]
                         + [rs.process(signal[:0], last=True)])
    assert len(out) == pytest.approx(24000, abs=2)
    assert dominant_hz(out[2000:-2000], 24000) == pytest.approx(freq, rel=0.002, abs=1)


def test_equal_rates_pass_through_untouched():
    rs = StreamResampler(24000, 24000)
    x = tone(440, 0.1)
    assert rs.passthrough and rs.process(x) is x and rs.delay_out_samples == 0


def test_downmix_averages_channels_without_allocating_output():
    left = np.array([100, -200, 32767, -32768], np.int16)
    right = np.array([300, 200, 32767, -32768], np.int16)
    inter = np.stack([left, right], axis=1).reshape(-1)
    out, scratch = np.zeros(8, np.int16), np.zeros(8, np.int32)
    mono = downmix_into(inter, 2, out, scratch)
    assert mono.tolist() == [200, 0, 32767, -32768]
    assert np.shares_memory(mono, out)

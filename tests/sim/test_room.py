"""The synthetic room: its impulse response and its two ways of filtering agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kiosk.sim.room import EchoPath, RoomModel, room_impulse_response


def test_impulse_response_decays_by_60_db_in_rt60() -> None:
    h = room_impulse_response(0.3, 24000)
    assert math.isclose(float(np.dot(h, h)), 1.0, rel_tol=1e-5)
    env = np.sqrt(np.convolve(h.astype(np.float64) ** 2, np.ones(480) / 480, "valid"))
    early, late = env[240], env[int(0.25 * 24000)]
    # -60 dB per 0.3 s: ~47 dB between 10 ms and 250 ms, give or take the noise's spread.
    assert 40 < 20 * math.log10(early / late) < 56


@pytest.mark.parametrize("block", [240, 480, 1000])
def test_streaming_equals_whole_signal(block: int) -> None:
    room = RoomModel(delay_ms=50, echo_gain_db=-10, noise_dbfs=None)
    x = np.random.default_rng(0).normal(0, 3000, 24000).astype(np.float32)
    whole = EchoPath(room).apply(x)
    path = EchoPath(room, max_block=block)
    streamed = np.concatenate([path.process(x[i:i + block]) for i in range(0, len(x), block)])
    assert np.allclose(streamed[:len(whole)], whole, atol=0.05)
    d = room.delay_samples
    assert np.abs(whole[:d]).max() < 1e-2  # nothing before the configured delay
    gain_db = 10 * math.log10(float(np.dot(whole[d:], whole[d:])) / float(np.dot(x, x)))
    assert gain_db == pytest.approx(-10, abs=1.0)

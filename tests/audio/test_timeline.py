"""Placing a stream's blocks by their time stamps (kiosk/audio/timeline.py)."""

from __future__ import annotations

import numpy as np

from kiosk.audio.timeline import Move, StreamTimeline

RATE = 24000
BLOCK = 480  # 20 ms


def feed(tl: StreamTimeline, stamps: list[int]) -> tuple[list[int], list[Move]]:
    positions, moves = [], []
    for stamp in stamps:
        pos, move = tl.place(stamp, BLOCK)
        positions.append(pos)
        if move is not None:
            moves.append(move)
    return positions, moves


def test_a_steady_stream_stays_where_its_first_stamp_put_it() -> None:
    tl = StreamTimeline(RATE)
    stamps = [10_000 + i * BLOCK for i in range(500)]
    positions, moves = feed(tl, stamps)
    assert positions == stamps and moves == [] and tl.moves == 0


def test_an_output_stream_stamped_early_at_its_start_is_moved_as_a_whole() -> None:
    # PortAudio's first callbacks on a new output stream (prefill) were stamped 3-48 ms early
    # through PulseAudio; from the fourth block on, right.
    for early_ms in (3, 7, 43):
        early = early_ms * RATE // 1000
        true = [10_000 + i * BLOCK for i in range(200)]
        stamps = [t - early if i < 3 else t for i, t in enumerate(true)]
        tl = StreamTimeline(RATE)
        positions, moves = feed(tl, stamps)
        assert moves == [Move(true[0] - early, true[8] - early, early)], early_ms
        assert positions[8:] == true[8:], early_ms  # from the move on, the true positions
        assert tl.moves == 1


def test_jitter_alone_does_not_move_a_stream() -> None:
    rng = np.random.default_rng(3)
    true = 10_000 + np.arange(30_000) * BLOCK  # 10 minutes
    for jitter_ms in (0.1, 0.5):
        j = int(jitter_ms * RATE / 1000)
        tl = StreamTimeline(RATE)
        positions, moves = feed(tl, [int(t) for t in true + rng.integers(-j, j + 1, len(true))])
        assert tl.moves == 0 and moves == [], jitter_ms
        assert np.max(np.abs(np.asarray(positions) - true)) <= j


def test_a_drifting_clock_is_followed_in_small_steps() -> None:
    # A USB speaker's clock 50 ppm slow: its blocks come 1 ms later per 20 s.
    true = [10_000 + int(i * BLOCK * (1 + 50e-6)) for i in range(30_000)]  # 10 minutes
    tl = StreamTimeline(RATE)
    positions, moves = feed(tl, true)
    err = np.abs(np.asarray(positions) - np.asarray(true))
    assert err.max() <= 2 * tl.tolerance  # never more than ~2 ms off
    assert 10 <= tl.moves <= 40 and moves == []  # ~30 ms in 10 min, in steps of ~1 ms
    steps = np.diff(positions) - BLOCK
    assert steps.max() <= 2 * tl.tolerance


def test_an_underrun_moves_the_rest_of_the_stream_later() -> None:
    # 30 ms skipped after 10 s: the stamps say so from then on.
    true = [10_000 + i * BLOCK + (720 if i >= 500 else 0) for i in range(800)]
    tl = StreamTimeline(RATE)
    positions, moves = feed(tl, true)
    assert moves == []  # what played before the underrun stays where it was
    assert positions[-100:] == true[-100:]
    assert tl.moves == 1


def test_a_stamp_far_off_starts_the_stream_anew() -> None:
    tl = StreamTimeline(RATE)
    feed(tl, [10_000 + i * BLOCK for i in range(50)])
    later = 10_000 + 50 * BLOCK + RATE  # a second later: a new stream
    positions, moves = feed(tl, [later + i * BLOCK for i in range(20)])
    assert positions[0] == later and moves == [] and tl.restarts == 1
    assert positions == [later + i * BLOCK for i in range(20)]

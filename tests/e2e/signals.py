"""What the e2e tests feed the microphone, and how they read what the speaker played."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from kiosk.sim import utterance as sim_utterance
from tests.audio.helpers import dominant_hz, tone  # noqa: F401 - re-exported for the tests


def utterance(speech_s: float = 0.8, lead_s: float = 0.2, tail_s: float = 1.0) -> np.ndarray:
    """A patient's turn, with a little more trailing silence: real devices add latency."""
    return sim_utterance(speech_s, lead_s, tail_s)


def loud_runs(x: np.ndarray, rate_hz: int = 24000, threshold: int = 800,
              gap_s: float = 0.08) -> list[tuple[int, int]]:
    """(start, end) sample ranges where |x| exceeds `threshold`, joined across short gaps."""
    idx = np.flatnonzero(np.abs(x.astype(np.int32)) > threshold)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap_s * rate_hz)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def longest_run(x: np.ndarray) -> np.ndarray:
    runs = loud_runs(x)
    assert runs, "the speaker played nothing"
    start, end = max(runs, key=lambda r: r[1] - r[0])
    return x[start:end]


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll a condition that has no event to wait on (audio arriving), with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)
    return value


def wait_for_chime_end(speaker, timeout_s: float = 5.0) -> None:
    """A patient presses, hears the chime, then talks: wait until the speaker recording shows
    the chime and 0.2 s of quiet after it (the echo gate drops the mic while it sounds)."""
    wait_until(lambda: loud_runs(speaker.samples()), timeout_s, "the chime at the press")
    wait_until(lambda: (r := loud_runs(speaker.samples())) and
               r[-1][1] + 0.2 * 24000 < len(speaker.samples()), timeout_s, "the chime's end")

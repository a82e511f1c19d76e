"""Known signals for the virtual patient, and how to find them again in what came out.

The "words" are pseudo-random syllables (harmonics of a gliding fundamental under a smooth
envelope, random lengths and pauses). Unlike a periodic test voice, a cross-correlation
finds them at exactly one offset, so what the simulator received can be lined up with what
was played, sample for sample, even when its beginning is missing.
"""

from __future__ import annotations

import numpy as np

RATE = 24000
WINDOW = RATE // 100  # 10 ms, the simulator's VAD window
HEARD_RMS = 600.0  # the simulator's default VAD threshold: a window it counts as speech
QUIET = 64  # |sample| at or below this is silence on the speaker (the null sink is exact)


def words(duration_s: float, seed: int = 13, level: float = 0.5) -> np.ndarray:
    """int16 speech-like syllables, `duration_s` long, the same for the same seed."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    total = int(duration_s * RATE)
    made = 0
    while made < total:
        n = int(rng.uniform(0.08, 0.25) * RATE)
        f0 = rng.uniform(110, 220)
        f = np.linspace(f0, f0 * rng.uniform(0.8, 1.25), n)
        phase = 2 * np.pi * np.cumsum(f) / RATE
        syllable = sum(np.sin(k * phase) / k for k in range(1, 6))
        syllable = syllable * np.sin(np.pi * np.arange(n) / n) ** 0.5  # soft attack and decay
        gap = np.zeros(int(rng.uniform(0.02, 0.06) * RATE))
        parts += [syllable, gap]
        made += n + len(gap)
    x = np.concatenate(parts)[:total]
    peak = float(np.max(np.abs(x))) or 1.0
    return np.round(x / peak * level * 32767).astype(np.int16)


def locate(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Offset of `needle` in `haystack` at the best cross-correlation (negative when the
    needle's beginning lies before the haystack's start)."""
    a = haystack.astype(np.float64)
    b = needle.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    # Lags from -(len(b) - 1) to len(a) - 1; negative lags wrap to the end of the array.
    lags = np.concatenate([np.arange(0, len(a)), np.arange(-(len(b) - 1), 0)])
    idx = np.concatenate([np.arange(0, len(a)), np.arange(n - (len(b) - 1), n)])
    return int(lags[int(np.argmax(corr[idx]))])


def _rms(x: np.ndarray) -> np.ndarray:
    w = x[:len(x) // WINDOW * WINDOW].astype(np.float64).reshape(-1, WINDOW)
    return np.sqrt(np.mean(w ** 2, axis=1))


def fraction_received(received: np.ndarray, sent: np.ndarray, from_sample: int = 0
                      ) -> tuple[float, int]:
    """(fraction, offset): of the 10 ms windows of `sent` from `from_sample` on that a
    server VAD hears as speech, the fraction found in `received` at the lined-up place with at
    least half their level; offset is where `sent` starts in `received`."""
    offset = locate(received, sent)
    ref = _rms(sent)
    first = max(0, -(-from_sample // WINDOW))
    counted = heard = 0
    for w in range(first, len(ref)):
        if ref[w] < HEARD_RMS:
            continue
        counted += 1
        start = offset + w * WINDOW
        if start < 0 or start + WINDOW > len(received):
            continue
        got = received[start:start + WINDOW].astype(np.float64)
        heard += bool(np.sqrt(np.mean(got ** 2)) >= 0.5 * ref[w])
    return (heard / counted if counted else 0.0), offset


def first_sound(x: np.ndarray, start: int) -> int | None:
    """Index of the first sample at or after `start` louder than silence."""
    loud = np.flatnonzero(np.abs(x[max(0, start):].astype(np.int32)) > QUIET)
    return int(loud[0]) + max(0, start) if len(loud) else None


def silent_from(x: np.ndarray, start: int, hold: int = RATE // 20) -> int | None:
    """First index at or after `start` from which `hold` samples (50 ms) are all silent."""
    loud = np.abs(x.astype(np.int32)) > QUIET
    i = max(0, start)
    while i + hold <= len(x):
        later = np.flatnonzero(loud[i:i + hold])
        if not len(later):
            return i
        i += int(later[-1]) + 1
    return None

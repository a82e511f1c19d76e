"""Signal helpers for the audio tests: tones in, frequency and level out."""

from __future__ import annotations

import numpy as np


def tone(freq_hz: float, seconds: float, rate_hz: int = 24000,
         amplitude: float = 0.5) -> np.ndarray:
    """A sine tone as int16 at `amplitude` of full scale."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def dominant_hz(x: np.ndarray, rate_hz: int) -> float:
    """Frequency of the strongest spectral peak (Hann window, parabolic interpolation)."""
    x = np.asarray(x, dtype=np.float64)
    spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x))))
    k = int(np.argmax(spec[1:])) + 1
    if 1 <= k < len(spec) - 1:
        a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return float(k * rate_hz / len(x))


def rms_dbfs(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    rms = np.sqrt(np.mean(x * x)) if len(x) else 0.0
    return 20 * np.log10(rms / 32768) if rms > 0 else -120.0


def loud_part(x: np.ndarray, rate_hz: int = 24000, threshold: float = 1000.0,
              margin_s: float = 0.05) -> np.ndarray:
    """The stretch between the first and last sample above `threshold`, minus edge margins."""
    idx = np.flatnonzero(np.abs(x.astype(np.int32)) > threshold)
    if len(idx) == 0:
        return x[:0]
    m = int(margin_s * rate_hz)
    return x[idx[0] + m: idx[-1] - m]

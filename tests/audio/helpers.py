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


def speech_features(x: np.ndarray, rate_hz: int = 24000) -> dict[str, float]:
    """What tells speech from a tone or a hum, measured on a recording:

    * ``tone_share``: energy within +-20 Hz of the strongest frequency (a tone: ~1; speech,
      whose pitch moves and which has formants: well under 0.3);
    * ``voice_band``: energy between 80 Hz and 4 kHz (speech: most of it; white noise: a third);
    * ``envelope_db``: spread of the 20 ms level over the loud part, dB (syllables and pauses:
      several dB; a steady tone or noise: about 1 dB).
    """
    x = np.asarray(x, dtype=np.float64)
    n = 2048
    frames = len(x) // n
    spec = np.zeros(n // 2 + 1)
    for i in range(frames):
        seg = x[i * n:(i + 1) * n]
        spec += np.abs(np.fft.rfft((seg - seg.mean()) * np.hanning(n))) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate_hz)
    total = float(spec.sum()) or 1.0
    peak = freqs[int(np.argmax(spec))]
    tone_share = float(spec[np.abs(freqs - peak) <= 20].sum()) / total
    voice_band = float(spec[(freqs >= 80) & (freqs <= 4000)].sum()) / total
    block = rate_hz // 50
    levels = np.sqrt(np.mean(x[:len(x) // block * block].reshape(-1, block) ** 2, axis=1))
    db = 20 * np.log10(np.maximum(levels, 1.0))
    loud = db[db > db.max() - 40]
    return {"tone_share": tone_share, "voice_band": voice_band,
            "envelope_db": float(np.std(loud)) if len(loud) else 0.0}


def is_speech_like(x: np.ndarray, rate_hz: int = 24000) -> bool:
    f = speech_features(x, rate_hz)
    return f["tone_share"] < 0.3 and f["voice_band"] > 0.8 and f["envelope_db"] > 4.0

"""A synthetic, voice-like answer signal: harmonics of a known fundamental under a
syllable-rate envelope. Tests can find the fundamental in what the kiosk played."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE_HZ = 24000


def synth_voice(duration_s: float = 1.5, f0_hz: float = 220.0, *,
                syllable_hz: float = 4.0, level: float = 0.3,
                rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """int16 mono samples: harmonics 1-5 of `f0_hz` (falling amplitude), amplitude-modulated at
    `syllable_hz` like syllables, with 10 ms fades so it starts and ends without clicks."""
    n = max(1, int(round(duration_s * rate_hz)))
    t = np.arange(n) / rate_hz
    wave = sum(np.sin(2 * np.pi * f0_hz * k * t) / k for k in range(1, 6))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * syllable_hz * t - np.pi / 2)
    fade = min(n // 2, rate_hz // 100)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        envelope[:fade] *= ramp
        envelope[-fade:] *= ramp[::-1]
    signal = wave * envelope
    peak = float(np.max(np.abs(signal))) or 1.0
    return np.round(signal / peak * level * 32767).astype(np.int16)


def speech_like(duration_s: float, f0_hz: float = 140.0, *,
                rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A 'patient' utterance for tests: the same recipe at a lower voice and louder."""
    return synth_voice(duration_s, f0_hz, syllable_hz=5.0, level=0.5, rate_hz=rate_hz)


def silence(duration_s: float, *, rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    return np.zeros(int(round(duration_s * rate_hz)), dtype=np.int16)


def utterance(speech_s: float = 0.8, lead_s: float = 0.2, tail_s: float = 0.8, *,
              rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A patient's turn: silence, a spoken-like phrase, then enough silence for the server
    VAD to end the turn (its default silence_duration_ms is 500)."""
    return np.concatenate([silence(lead_s, rate_hz=rate_hz),
                           speech_like(speech_s, rate_hz=rate_hz),
                           silence(tail_s, rate_hz=rate_hz)])

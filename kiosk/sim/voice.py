"""Voices for the simulator and the tests.

`synth_voice`: a synthetic, voice-like signal, harmonics of a known fundamental under a
syllable-rate envelope: tests can find the fundamental in what the kiosk played. It is
periodic, which real speech is not: an echo canceller meets real speech, so echo tests use
`spoken` (espeak-ng speech, broadband with varying pitch; the synthetic voice when espeak-ng
is not installed).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import wave
from functools import lru_cache

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


@lru_cache(maxsize=16)
def _espeak(text: str, voice: str, speed: int, pitch: int) -> bytes | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as home:  # espeak-ng looks for a sound server
        env = {**os.environ, "HOME": home, "XDG_RUNTIME_DIR": home}
        try:
            return subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch),
                                   "--stdout", text], capture_output=True, timeout=30,
                                  check=True, env=env).stdout
        except (subprocess.SubprocessError, OSError):
            return None


def spoken(text: str, *, voice: str = "en-us", speed: int = 160, pitch: int = 50,
           fallback_f0_hz: float = 180.0) -> np.ndarray:
    """`text` spoken at 24 kHz (float32, int16 scale); synthetic voice without espeak-ng."""
    wav = _espeak(text, voice, speed, pitch)
    if wav is not None:
        import soxr

        with wave.open(io.BytesIO(wav)) as w:
            rate, frames = w.getframerate(), w.readframes(w.getnframes())
        pcm = np.frombuffer(frames, dtype=np.int16).astype(np.float32)
        return soxr.resample(pcm, rate, SAMPLE_RATE_HZ).astype(np.float32)
    seconds = max(1.0, len(text) / 14.0)  # about 14 characters a second
    if fallback_f0_hz < 160:
        return speech_like(seconds, fallback_f0_hz).astype(np.float32)
    return synth_voice(seconds, fallback_f0_hz).astype(np.float32)


def spoken_answer(text: str, duration_s: float, *, level_like: np.ndarray,
                  rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """`text` spoken (repeated as needed) for exactly `duration_s`, int16, with the RMS of
    `level_like` (the synthetic answer it stands in for) and 10 ms fades."""
    one = spoken(text)
    n = max(1, int(round(duration_s * rate_hz)))
    x = np.tile(one, -(-n // max(1, len(one))))[:n].astype(np.float64)
    ref = level_like.astype(np.float64)
    x *= np.sqrt(float(np.mean(ref * ref)) / max(float(np.mean(x * x)), 1e-9))
    fade = min(n // 2, rate_hz // 100)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)

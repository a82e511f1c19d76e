"""WAV files IT staff supply (replacement cues and spoken prompts) and espeak-ng writes: read
as 24 kHz mono int16, and checked for check-config with a message that says how to fix them.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from kiosk.audio.resample import resample_whole
from kiosk.ports import SAMPLE_RATE_HZ

FIX = "convert it: sox IN -b 16 -e signed-integer OUT.wav"


def read_wav(path: str | Path) -> np.ndarray:
    """A 16-bit PCM WAV file (any rate, mono or stereo) as 24 kHz mono int16.
    Raises ValueError saying what is wrong and how to fix it."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path} is {8 * w.getsampwidth()}-bit audio, not 16-bit; "
                                 f"{FIX}")
            rate, channels = w.getframerate(), w.getnchannels()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    except (OSError, wave.Error, EOFError) as exc:
        raise ValueError(f"cannot read {path} as a 16-bit PCM WAV file ({exc}); {FIX}") from None
    if channels > 1:
        data = data[:len(data) - len(data) % channels].reshape(-1, channels).mean(axis=1)
    return resample_whole(data.astype(np.int16), rate, SAMPLE_RATE_HZ)


def wav_problem(path: str | Path, max_s: float | None = None) -> str | None:
    """What is wrong with a WAV file for the kiosk, or None: the header only (check-config
    stays fast on a Pi)."""
    try:
        with wave.open(str(path), "rb") as w:
            width, frames, rate = w.getsampwidth(), w.getnframes(), w.getframerate()
    except (OSError, wave.Error, EOFError) as exc:
        return f"`{path}` is not a PCM WAV file ({exc}); {FIX}"
    if width != 2:
        return f"`{path}` is {8 * width}-bit audio, not 16-bit; {FIX}"
    if frames == 0 or rate <= 0:
        return f"`{path}` holds no audio"
    if max_s is not None and frames / rate > max_s:
        return (f"`{path}` is {frames / rate:.0f} s long; keep it under {max_s:g} s "
                "(a patient waits for it to end)")
    return None

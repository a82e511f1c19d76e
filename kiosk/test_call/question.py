"""The test call's spoken question, as 24 kHz mono int16.

Spoken by espeak-ng when it is installed (real words: what a speech service's voice activity
detection is made for, and a question its model can answer); otherwise a synthetic voice:
vowels with moving formants on a falling pitch, in syllables and words, which an energy
detector and, as far as tested, a model detector take for speech (it has no words, so the
assistant answers something like "I did not catch that": an answer all the same).

Made once per process, on the thread that asks (espeak-ng takes a fraction of a second), and
kept: about 150 KB.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from kiosk.audio.espeak import Espeak, SynthesisError
from kiosk.ports import SAMPLE_RATE_HZ

log = logging.getLogger("kiosk.test_call")

QUESTION = "This is a test call. Please say OK."
ESPEAK_VOICE = "en-us"
PEAK = 16000  # about -6 dBFS: a clear voice close to the microphone, never clipped
LEAD_S = 0.3  # silence before the question, like a breath after the chime


@functools.lru_cache(maxsize=1)
def test_question() -> tuple[np.ndarray, str]:
    """(the question with its lead-in silence, what spoke it: "espeak-ng" or
    "synthetic voice"). The array is shared: read-only."""
    pcm, voice = _espeak(QUESTION), "espeak-ng"
    if pcm is None:
        pcm, voice = synthetic_voice(2.5), "synthetic voice"
    out = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE_HZ), np.int16), pcm])
    out.flags.writeable = False
    return out, voice


def _espeak(text: str) -> np.ndarray | None:
    """`text` spoken by espeak-ng at 24 kHz, or None (not installed, or it failed: logged)."""
    espeak = Espeak.find()
    if espeak is None:
        return None
    try:
        speech = espeak.synthesize(text, ESPEAK_VOICE, words_per_minute=160)
    except SynthesisError as exc:
        log.warning("test call: espeak-ng could not speak the question (%s); using a "
                    "synthetic voice", exc)
        return None
    peak = int(np.max(np.abs(speech.astype(np.int32))))
    if peak == 0:
        log.warning("test call: espeak-ng gave silence; using a synthetic voice")
        return None
    return (speech.astype(np.float32) * (PEAK / peak)).astype(np.int16)


# First two formants (Hz) of the vowels a, i, o, e: what makes a sound a vowel to a listener.
_VOWELS = ((730.0, 1090.0), (270.0, 2290.0), (570.0, 840.0), (530.0, 1840.0))
_SYLLABLES_PER_S = 4.0


def synthetic_voice(seconds: float) -> np.ndarray:
    """Speech-like sound without words: a voice source on a slowly falling pitch, filtered
    into a different vowel each syllable, in words of three syllables with short pauses."""
    n = int(seconds * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    f0 = 150.0 - 30.0 * t / max(seconds, 1e-9)  # intonation falls over the phrase
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ
    syllable = (t * _SYLLABLES_PER_S).astype(int)
    f1 = np.array([v[0] for v in _VOWELS])[syllable % len(_VOWELS)]
    f2 = np.array([v[1] for v in _VOWELS])[syllable % len(_VOWELS)]
    voice = np.zeros(n)
    for k in range(1, 30):  # harmonics weighted by the vowel's formant peaks
        fk = k * f0
        weight = (np.exp(-((fk - f1) / 120.0) ** 2) + 0.5 * np.exp(-((fk - f2) / 180.0) ** 2)
                  + 0.03) / np.sqrt(k)
        voice += weight * np.sin(k * phase)
    within = (t * _SYLLABLES_PER_S) % 1.0
    envelope = np.sin(np.pi * within) ** 0.5  # each syllable swells and fades
    envelope[syllable % 4 == 3] = 0.0  # a pause after every third syllable: words
    voice *= envelope
    peak = float(np.max(np.abs(voice))) or 1.0
    return np.round(voice * (PEAK / peak)).astype(np.int16)

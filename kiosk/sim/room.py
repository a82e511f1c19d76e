"""A synthetic room between the kiosk's speaker and its microphone (echo tests, benchmarks).

What the microphone hears of the speaker is modelled as: the speaker's signal, delayed (the
sound's flight plus the devices' buffers, 30-150 ms in practice), filtered by a room impulse
response (a direct path, then a diffuse tail of exponentially decaying noise whose level falls
by 60 dB in `rt60_s`, about 0.3 s for a furnished hospital room), attenuated, with some
background noise and whatever the patient says on top.

`RoomModel` holds the parameters; `EchoPath` applies them block by block (the rig in
`kiosk.audio.room_rig` runs it between the virtual speaker and microphone) and
`EchoPath.apply` to a whole signal (benchmarks and unit tests build their scenes with it).
Everything is float32 numpy at one rate (the kiosk's 24 kHz by default); int16 in and out of
the rig is converted by the callers.

Example::

    room = RoomModel(delay_ms=80, rt60_s=0.3, echo_gain_db=-12)
    echo = EchoPath(room).apply(answer.astype(np.float32))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RATE_HZ = 24000


@dataclass(frozen=True)
class RoomModel:
    """The acoustic echo path's parameters.

    `echo_gain_db` is the level of the echo relative to the speaker's signal (the impulse
    response has unit energy, so a broadband signal's echo has that RMS ratio);
    `noise_dbfs` the RMS of the background noise (None: none); `seed` makes the impulse
    response and the noise reproducible.
    """

    delay_ms: float = 80.0
    rt60_s: float = 0.3
    echo_gain_db: float = -12.0
    noise_dbfs: float | None = -65.0
    direct_to_reverb_db: float = 0.0
    seed: int = 14
    rate_hz: int = RATE_HZ

    @property
    def delay_samples(self) -> int:
        return int(round(self.delay_ms * self.rate_hz / 1000.0))


def room_impulse_response(rt60_s: float = 0.3, rate_hz: int = RATE_HZ, *,
                          direct_to_reverb_db: float = 0.0, seed: int = 14) -> np.ndarray:
    """A synthetic room impulse response (float32, unit energy) starting with its direct path.

    The tail is white noise under an exponential envelope that decays by 60 dB in `rt60_s`
    and is cut where it has fallen that far; `direct_to_reverb_db` is the energy of the
    direct path over the tail's (0 dB: a speaker an arm's length from the microphone).
    """
    n = max(2, int(math.ceil(rt60_s * rate_hz)))
    t = np.arange(n, dtype=np.float64) / rate_hz
    decay = np.exp(-math.log(1000.0) * t / rt60_s)  # amplitude: -60 dB at rt60_s
    tail = np.random.default_rng(seed).standard_normal(n) * decay
    tail[0] = 0.0
    tail /= math.sqrt(float(np.dot(tail, tail)))
    direct = 10.0 ** (direct_to_reverb_db / 20.0)
    h = tail
    h[0] = direct
    h /= math.sqrt(float(np.dot(h, h)))
    return h.astype(np.float32)


class EchoPath:
    """The room as a filter: delay, impulse response and gain in one FIR, applied by FFT.

    `process(block)` is streaming overlap-save (any block length up to `max_block`), with
    its FFT buffers allocated once; `apply(signal)` filters a whole signal at once.
    """

    def __init__(self, room: RoomModel, max_block: int = 2048) -> None:
        self.room = room
        rir = room_impulse_response(room.rt60_s, room.rate_hz,
                                    direct_to_reverb_db=room.direct_to_reverb_db,
                                    seed=room.seed)
        gain = 10.0 ** (room.echo_gain_db / 20.0)
        self.fir = np.concatenate([np.zeros(room.delay_samples, np.float32),
                                   rir * np.float32(gain)]).astype(np.float32)
        self.taps = len(self.fir)
        self.max_block = max_block
        self.nfft = 1 << int(math.ceil(math.log2(self.taps + max_block)))
        self._spectrum = np.fft.rfft(self.fir, self.nfft)
        self._history = np.zeros(self.nfft, np.float64)  # newest input at the end
        self._noise = np.random.default_rng(room.seed + 1)
        self._noise_rms = (0.0 if room.noise_dbfs is None
                           else 32768.0 * 10.0 ** (room.noise_dbfs / 20.0))

    def process(self, block: np.ndarray) -> np.ndarray:
        """The echo of the next `block` of speaker samples (float32, same length), noise
        included; the filter's state carries over from the previous block."""
        n = len(block)
        if n > self.max_block:
            raise ValueError(f"block of {n} samples > max_block {self.max_block}")
        h = self._history
        h[:-n] = h[n:]
        h[-n:] = block
        out = np.fft.irfft(np.fft.rfft(h) * self._spectrum, self.nfft)[-n:]
        if self._noise_rms:
            out = out + self._noise.standard_normal(n) * self._noise_rms
        return out.astype(np.float32)

    def apply(self, signal: np.ndarray) -> np.ndarray:
        """The echo of a whole speaker signal (float32, same length), noise included."""
        x = np.asarray(signal, np.float64)
        n = len(x)
        size = 1 << int(math.ceil(math.log2(n + self.taps)))
        out = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(self.fir, size), size)[:n]
        if self._noise_rms:
            out = out + self._noise.standard_normal(n) * self._noise_rms
        return out.astype(np.float32)


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of int16-scaled samples in dBFS (floor -150)."""
    x = np.asarray(x, np.float64)
    if not len(x):
        return -150.0
    r = math.sqrt(float(np.dot(x, x)) / len(x))
    return 20.0 * math.log10(r / 32768.0) if r > 0 else -150.0


def scale_to_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    """`x` (float) scaled so that its RMS over its active part is `dbfs`.

    "Active" is the samples above -50 dB of the peak's envelope, so the pauses of a phrase
    do not lower its level (a speech level, roughly as a level meter would show it).
    """
    x = np.asarray(x, np.float64)
    active = active_samples(x)
    level = rms_dbfs(x[active]) if active.any() else rms_dbfs(x)
    return (x * 10.0 ** ((dbfs - level) / 20.0)).astype(np.float32)


def active_samples(x: np.ndarray, rate_hz: int = RATE_HZ, frame_ms: int = 10,
                   below_peak_db: float = 35.0) -> np.ndarray:
    """Boolean mask of the samples in 10 ms frames whose level is within `below_peak_db` of
    the loudest frame (where a phrase is actually voiced)."""
    x = np.asarray(x, np.float64)
    f = max(1, rate_hz * frame_ms // 1000)
    m = len(x) // f
    mask = np.zeros(len(x), bool)
    if m == 0:
        return mask
    energy = (x[:m * f].reshape(m, f) ** 2).mean(axis=1)
    top = float(energy.max())
    if top <= 0:
        return mask
    loud = energy >= top * 10.0 ** (-below_peak_db / 10.0)
    mask[:m * f] = np.repeat(loud, f)
    return mask

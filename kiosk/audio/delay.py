"""Echo delay estimation: where in the reference is what the microphone hears?

GCC-PHAT (cross-correlation with the spectrum whitened, so the direct path's sharp peak
stands out of a reverberant room's smear) between the microphone and the reference, both
decimated to 4 kHz, over the last `window_s` of audio while the kiosk plays. AEC3 has its own
estimator but keeps it to itself and only covers about half a second; this one says how far
off the reference is, covers `min_delay_ms`..`max_delay_ms`, and costs ~0.5 ms per estimate
(one a second while audio plays).

The caller feeds paired frames (`add`: microphone and the reference it is paired with), asks
`ready()`, and `take()` an estimate: samples at the caller's rate by which the echo lags the
paired reference, or None when the peak is not clear (no echo, the patient talking over it)
or not unique (a periodic sound matches at several delays).
"""

from __future__ import annotations

import math

import numpy as np

_DECIM = 6  # 24 kHz -> 4 kHz: speech's echo is well correlated below 2 kHz


class DelayEstimator:
    """Tracks the delay between paired microphone and reference frames (see module doc)."""

    def __init__(self, rate_hz: int, *, min_delay_ms: float = -100.0,
                 max_delay_ms: float = 800.0, window_s: float = 1.0, every_s: float = 1.0,
                 min_peak_ratio: float = 8.0, min_rival_ratio: float = 1.5) -> None:
        self.rate_hz = rate_hz
        self.decim = _DECIM if rate_hz % _DECIM == 0 else 1
        dr = rate_hz // self.decim
        self._neg = max(0, int(math.ceil(-min_delay_ms * dr / 1000.0)))
        self._pos = max(0, int(math.ceil(max_delay_ms * dr / 1000.0)))
        self._win = int(window_s * dr)
        self._every = int(every_s * dr)
        self.min_peak_ratio = min_peak_ratio
        self.min_rival_ratio = min_rival_ratio
        self._guard = max(1, int(0.0025 * dr))  # the main peak's own width (2.5 ms)
        self._len = self._win + self._neg + self._pos
        self._mic = np.zeros(self._len, np.float32)
        self._ref = np.zeros(self._len, np.float32)
        self._nfft = 1 << int(math.ceil(math.log2(self._len + self._win)))
        self._fill = 0  # decimated samples held (up to _len)
        self._since = 0  # decimated far-end samples since the last estimate
        self.last_delay: int | None = None
        """The latest confident estimate, in samples at `rate_hz` (kept across `clear`)."""
        self.last_peak_ratio = 0.0

    def clear(self) -> None:
        """Forget the history (after the caller shifted its pairing)."""
        self._fill = 0
        self._since = 0
        self._mic[:] = 0
        self._ref[:] = 0

    def add(self, mic: np.ndarray, ref: np.ndarray, far_active: bool = True) -> None:
        """Append one paired frame (lengths a multiple of the decimation factor)."""
        k = len(mic) // self.decim
        if k == 0:
            return
        for ring, x in ((self._mic, mic), (self._ref, ref)):
            ring[:-k] = ring[k:]
            np.mean(x[:k * self.decim].reshape(k, self.decim), axis=1, out=ring[-k:])
        self._fill = min(self._len, self._fill + k)
        if far_active:
            self._since += k

    def ready(self) -> bool:
        """Enough audio for an estimate, and enough new far-end audio since the last one."""
        return self._fill >= self._len and self._since >= self._every

    def take(self) -> int | None:
        """Estimate now: the echo's delay behind the paired reference, or None if unclear."""
        self._since = 0
        n, neg, pos = self._win, self._neg, self._pos
        mic = self._mic[self._len - n - neg:self._len - neg]
        if float(np.dot(mic, mic)) <= 0.0 or float(np.dot(self._ref, self._ref)) <= 0.0:
            return None
        spec = np.conj(np.fft.rfft(mic, self._nfft)) * np.fft.rfft(self._ref, self._nfft)
        spec /= np.abs(spec) + 1e-9
        cc = np.fft.irfft(spec, self._nfft)[:neg + pos + 1]
        # cc[k] = sum_t mic[t] ref[t + k]; mic[t] hears ref[t + pos - d] -> d = pos - k
        k = int(np.argmax(cc))
        ratio = float(cc[k]) / (float(np.mean(np.abs(cc))) + 1e-12)
        self.last_peak_ratio = ratio
        if ratio < self.min_peak_ratio:
            return None
        # A periodic far end (a held vowel, a chime, a synthetic voice) correlates as well at
        # a period's distance: with a rival peak nearly as high the delay is ambiguous, and a
        # wrong one would undo a working canceller.
        guard = self._guard
        rival = max(float(np.max(cc[:max(0, k - guard)], initial=0.0)),
                    float(np.max(cc[k + guard + 1:], initial=0.0)))
        if cc[k] < self.min_rival_ratio * rival:
            return None
        self.last_delay = (pos - k) * self.decim
        return self.last_delay

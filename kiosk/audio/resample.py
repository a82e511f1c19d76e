"""Streaming sample-rate conversion and channel helpers for int16 audio.

The realtime service only takes 24000 Hz; many USB microphones and speakers only run at
48000 or 44100 Hz. `StreamResampler` converts a continuous stream chunk by chunk with
libsoxr's `ResampleStream` (its filters keep state across chunks, so there are no clicks or
phase jumps at chunk borders). When both rates are equal it is a zero-cost pass-through.
"""

from __future__ import annotations

import numpy as np
import soxr

# Quality presets of libsoxr. "LQ" is 16-bit precision (exactly what int16 audio carries),
# flat to 8 kHz at a 24 kHz output and, unlike "MQ"/"HQ", delivers output steadily chunk by
# chunk instead of in ~35 ms bursts, which keeps microphone-to-send latency at one frame.
CAPTURE_QUALITY = "LQ"
# Answer audio and cues are resampled when written, where bursts do not matter: keep it flat.
DEFAULT_QUALITY = "HQ"


class StreamResampler:
    """Convert a mono int16 stream from `in_rate_hz` to `out_rate_hz`, chunk by chunk.

    Example::

        rs = StreamResampler(48000, 24000)
        out = rs.process(block_48k)          # about len(block) / 2 samples
        tail = rs.process(last_block, last=True)  # flush the filter at the end
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = DEFAULT_QUALITY) -> None:
        self.in_rate_hz = int(in_rate_hz)
        self.out_rate_hz = int(out_rate_hz)
        self._quality = quality
        self._stream: soxr.ResampleStream | None = None
        self.reset()

    @property
    def passthrough(self) -> bool:
        """True when no conversion is needed (the rates are equal)."""
        return self.in_rate_hz == self.out_rate_hz

    def reset(self) -> None:
        """Forget filter state (start of a new, unrelated stream)."""
        if self.passthrough:
            self._stream = None
        else:
            self._stream = soxr.ResampleStream(self.in_rate_hz, self.out_rate_hz, 1,
                                               dtype="int16", quality=self._quality)

    @property
    def delay_out_samples(self) -> float:
        """Output samples still inside the filter (their input has already been consumed)."""
        return 0.0 if self._stream is None else float(self._stream.delay())

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample one chunk of int16 mono samples; `last=True` flushes the filter tail."""
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.int16),
                                           last=last)


def downmix_into(interleaved: np.ndarray, channels: int, out: np.ndarray,
                 scratch: np.ndarray) -> np.ndarray:
    """Average `channels` interleaved int16 channels into `out` (int16), no allocation.

    `scratch` is an int32 work buffer at least as long as the result. Returns the filled
    slice of `out`.
    """
    frames = len(interleaved) // channels
    acc = scratch[:frames]
    np.copyto(acc, interleaved[0::channels], casting="unsafe")
    for ch in range(1, channels):
        np.add(acc, interleaved[ch::channels], out=acc, casting="unsafe")
    np.floor_divide(acc, channels, out=acc)
    dst = out[:frames]
    np.copyto(dst, acc, casting="unsafe")
    return dst


def resample_whole(samples: np.ndarray, in_rate_hz: int, out_rate_hz: int) -> np.ndarray:
    """Resample a complete int16 mono signal at once (cue files, tests)."""
    if in_rate_hz == out_rate_hz:
        return np.asarray(samples, dtype=np.int16)
    return soxr.resample(np.asarray(samples, dtype=np.int16), in_rate_hz, out_rate_hz,
                         quality=DEFAULT_QUALITY)

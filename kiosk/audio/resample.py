"""Streaming sample-rate conversion and channel helpers for int16 audio.

The realtime service only takes 24000 Hz; many USB microphones and speakers only run at
48000 or 44100 Hz. `StreamResampler` converts a continuous stream chunk by chunk with
libsoxr's `ResampleStream` (its filters keep state across chunks, so there are no clicks or
phase jumps at chunk borders). When both rates are equal it is a zero-cost pass-through.
"""

from __future__ import annotations

import numpy as np
import soxr

# libsoxr's quality preset; answer audio and cues are resampled when written, where the
# fixed-rate engine's ~20 ms output lumps do not matter.
DEFAULT_QUALITY = "HQ"


class StreamResampler:
    """Convert a mono int16 stream from `in_rate_hz` to `out_rate_hz`, chunk by chunk.

    Example::

        rs = StreamResampler(48000, 24000)
        out = rs.process(block_48k)          # about len(block) / 2 samples
        tail = rs.process(last_block, last=True)  # flush the filter at the end

    `steady=True` selects libsoxr's variable-rate engine: it hands out converted audio with
    every chunk and holds back a fixed 5-6 ms (15 ms when upsampling 16 kHz), where the
    fixed-rate presets emit lumps of ~20 ms (a microphone frame could wait a whole extra
    frame for its lump). It costs about
    four times the CPU of "HQ" and is as flat (to 11.5 kHz at a 24 kHz output), so the
    microphone path uses it and the speaker path does not.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = DEFAULT_QUALITY,
                 steady: bool = False) -> None:
        self.in_rate_hz = int(in_rate_hz)
        self.out_rate_hz = int(out_rate_hz)
        self._quality = quality
        self._steady = steady
        self._stream: soxr.ResampleStream | None = None
        self._in_total = 0
        self._out_total = 0
        self.reset()

    @property
    def passthrough(self) -> bool:
        """True when no conversion is needed (the rates are equal)."""
        return self.in_rate_hz == self.out_rate_hz

    def reset(self) -> None:
        """Forget filter state (start of a new, unrelated stream)."""
        self._in_total = self._out_total = 0
        if self.passthrough:
            self._stream = None
        else:
            self._stream = soxr.ResampleStream(self.in_rate_hz, self.out_rate_hz, 1,
                                               dtype="int16", quality=self._quality,
                                               vr=self._steady)

    @property
    def held_out_samples(self) -> float:
        """Output samples owed for input already consumed: what the filter still holds.

        Counted, not asked of libsoxr: its `delay()` leaves out what the variable-rate engine
        buffers when it upsamples. The output is time-aligned with the input, so this is
        exactly how much older the newest output sample is than the newest input sample.
        """
        if self._stream is None:
            return 0.0
        return max(0.0, self._in_total * self.out_rate_hz / self.in_rate_hz - self._out_total)

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample one chunk of int16 mono samples; `last=True` flushes the filter tail."""
        if self._stream is None:
            return samples
        out = self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.int16),
                                          last=last)
        self._in_total += len(samples)
        self._out_total += len(out)
        return out


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

"""The microphone's format-dependent buffers, and how device blocks become 24 kHz frames.

`CapturePipeline` is built for one device format (rate, channels) and swapped as one object
when the device is reopened. The callback side conditions each block (downmix, input gain)
and stores it in the ring with a time stamp; the reader side resamples what is queued and
cuts `frame_ms` frames, each dated by when its audio reached the callback. It knows nothing
of PortAudio: `kiosk.audio.capture.Capture` owns the stream and decides what is kept.
"""

from __future__ import annotations

import time

import numpy as np

from kiosk.audio.resample import StreamResampler, downmix_into
from kiosk.audio.ringbuffer import RingBuffer
from kiosk.ports import SAMPLE_RATE_HZ, Frame
from kiosk.settings import AudioSettings

_STAMPS = 64  # callback time stamps remembered (>1 s of blocks) to date each frame


class CapturePipeline:
    """Everything that depends on the device format, swapped as one object on reopen."""

    def __init__(self, settings: AudioSettings, rate_hz: int, channels: int) -> None:
        self.rate_hz = rate_hz
        self.channels = channels
        self.block = max(1, rate_hz * settings.frame_ms // 1000)
        self.frame_samples = SAMPLE_RATE_HZ * settings.frame_ms // 1000
        self.ring = RingBuffer(int(settings.capture_buffer_s * rate_hz), mode="capture")
        # The steady engine converts each block as it comes (it holds back about 5 ms at
        # 48 kHz), so a frame is complete in the callback that brings its last sample.
        self.resampler = StreamResampler(rate_hz, SAMPLE_RATE_HZ, steady=True)
        self.gain = 10.0 ** (settings.input_gain_db / 20.0)
        self.as_is = channels == 1 and self.gain == 1.0  # the callback can keep raw blocks
        self.passthrough = self.resampler.passthrough
        # Callback scratch: sized for 4 blocks in case the host delivers bigger buffers.
        big = self.block * 4
        self.mono = np.zeros(big, np.int16)
        self.i32 = np.zeros(big, np.int32)
        self.f32 = np.zeros(big, np.float32)
        # Reader side.
        self.chunk = np.zeros(self.block, np.int16)
        self.acc = np.zeros(self.frame_samples * 4 + self.block * 4, np.int16)
        self.acc_len = 0
        self.aligned = False  # see take_frame
        # Plain lists: the reader walks back over one or two entries, cheaper than numpy.
        self.stamp_pos: list[int] = [0] * _STAMPS
        self.stamp_time: list[float] = [0.0] * _STAMPS
        self.stamp_count = 0

    # -- callback side -------------------------------------------------------------------

    def store(self, raw: np.ndarray, now: float) -> None:
        """Condition one callback block into the ring and stamp it with `now`."""
        self.ring.write(raw if self.as_is and len(raw) <= len(self.f32) else
                        self.condition(raw, self.mono, self.i32, self.f32))
        i = self.stamp_count % _STAMPS
        self.stamp_pos[i] = self.ring.total_written
        self.stamp_time[i] = now
        self.stamp_count += 1

    def condition(self, raw: np.ndarray, mono_out: np.ndarray, i32: np.ndarray,
                  f32: np.ndarray) -> np.ndarray:
        """Interleaved device samples -> mono int16 with the input gain, into `mono_out`.

        The scratch buffers bound the block: a host handing over more keeps what fits.
        """
        n = min(len(raw) // self.channels, len(f32))
        if self.channels == 1:
            mono = raw[:n]
        else:
            mono = downmix_into(raw[:n * self.channels], self.channels, mono_out, i32)
        if self.gain != 1.0:
            f = f32[:n]
            np.copyto(f, mono, casting="unsafe")
            np.multiply(f, self.gain, out=f)
            np.clip(f, -32768.0, 32767.0, out=f)
            mono = mono_out[:n]
            np.copyto(mono, f, casting="unsafe")
        return mono

    # -- reader side ---------------------------------------------------------------------

    def take_frame(self) -> Frame | None:
        """Resample whatever is queued into the accumulator; cut one frame if complete."""
        fs = self.frame_samples
        if self.passthrough:  # 24 kHz device: the ring holds frames as they are
            if self.ring.available < fs:
                return None
            pcm = np.empty(fs, np.int16)
            if self.ring.read_into(pcm) < fs:  # disarm() cleared the ring meanwhile
                return None
            return Frame(pcm, self.input_time(self.ring.total_read))
        while self.acc_len < fs:
            n = self.ring.read_into(self.chunk)
            if n == 0:
                return None
            out = self.resampler.process(self.chunk[:n])
            m = len(out)
            if not self.aligned and m:
                # The filter holds its first few ms back, so the first block yields less than
                # a frame; every frame would then end just past a block and wait for the next
                # one. Starting the stream with that shortfall as silence puts frame ends on
                # block ends (once per session: a few ms of silence before the first word).
                self.aligned = True
                pad = -m % fs
                self.acc[:pad] = 0
                self.acc_len = pad
            if self.acc_len + m > len(self.acc):  # cannot happen with sane blocks; never overflow
                self.acc = np.concatenate([self.acc, np.zeros(m, np.int16)])
            self.acc[self.acc_len:self.acc_len + m] = out
            self.acc_len += m
        pcm = self.acc[:fs].copy()
        rest = self.acc_len - fs
        self.acc[:rest] = self.acc[fs:self.acc_len]
        self.acc_len = rest
        # The frame's last sample is `rest` samples plus the filter delay older than the
        # newest input consumed; date that input from the callback stamps.
        behind_s = (rest + self.resampler.held_out_samples) / SAMPLE_RATE_HZ
        return Frame(pcm, self.input_time(self.ring.total_read) - behind_s)

    def input_time(self, pos: int) -> float:
        """monotonic() at which input sample position `pos` reached the callback."""
        count = self.stamp_count
        if count == 0:
            return time.monotonic()
        # Walk back from the newest stamp to the oldest block that ends at or after `pos`.
        best = (count - 1) % _STAMPS
        i = count - 2
        while i >= max(0, count - _STAMPS) and self.stamp_pos[i % _STAMPS] >= pos:
            best = i % _STAMPS
            i -= 1
        return self.stamp_time[best] - (self.stamp_pos[best] - pos) / self.rate_hz

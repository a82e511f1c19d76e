"""A fixed-capacity ring of int16 samples between one audio callback and one other thread.

The storage is allocated once; `write` and `read_into` copy with numpy slices and never
allocate, so they are safe to call from a PortAudio callback. It is an anonymous memory map,
not a numpy allocation: a page costs memory only once audio is written to it, and a write
into an empty ring starts again at the beginning, so a 120 s ring that never holds more than
a few seconds keeps only those few seconds resident (a heap allocation would be zeroed, all
resident, and reused heap memory stays resident after the ring is dropped).

A tiny lock guards the two position counters (it is held only for the copies,
microseconds), which lets the capture ring drop its *oldest* audio from the producer side
without racing the consumer.

Two behaviours when the ring is full:

* ``mode="capture"`` (microphone backlog): the oldest samples are dropped so the newest audio
  is kept; `dropped_samples` and `overruns` count it. A stalled network link therefore loses
  the stale start of a sentence, never the words being spoken now.
* ``mode="playback"`` (answer jitter buffer): the write is cut to what fits and the rest
  (the newest samples) is refused and counted; the audio already queued plays on unchanged.

A read that finds fewer samples than it asked for counts one `underrun` (playback fills the
gap with silence).

Example::

    ring = RingBuffer(24000, mode="capture")
    ring.write(np.zeros(480, np.int16))
    out = np.empty(480, np.int16)
    n = ring.read_into(out)          # 480
"""

from __future__ import annotations

import mmap
import threading
from typing import Literal

import numpy as np

Mode = Literal["capture", "playback"]


class RingBuffer:
    """Fixed-capacity int16 ring, one producer thread and one consumer thread."""

    def __init__(self, capacity: int, mode: Mode = "capture") -> None:
        if capacity <= 0:
            raise ValueError(f"ring capacity must be positive, got {capacity}")
        if mode not in ("capture", "playback"):
            raise ValueError(f"ring mode must be 'capture' or 'playback', got {mode!r}")
        self._mem = mmap.mmap(-1, capacity * 2)  # zero pages, mapped on first write
        self._buf = np.frombuffer(self._mem, dtype=np.int16)
        self._capacity = capacity
        self._mode = mode
        # Cumulative counters since creation: available = written - read. Cumulative positions
        # let the playback side map samples back to the answer item they belong to.
        self._written = 0
        self._read = 0
        self._origin = 0  # the position stored at index 0: moved to `_written` when empty
        self._lock = threading.Lock()
        self.overruns = 0
        """Writes that did not fit completely."""
        self.underruns = 0
        """Reads that found fewer samples than requested."""
        self.dropped_samples = 0
        """Samples lost to overruns (oldest in capture mode, newest in playback mode)."""

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def available(self) -> int:
        """Samples waiting to be read."""
        return self._written - self._read

    @property
    def free(self) -> int:
        """Samples that can be written without an overrun."""
        return self._capacity - (self._written - self._read)

    @property
    def total_written(self) -> int:
        """Samples accepted since creation (a position, not a fill level)."""
        return self._written

    @property
    def total_read(self) -> int:
        """Samples consumed or cleared since creation."""
        return self._read

    def write(self, samples: np.ndarray) -> int:
        """Append int16 samples; returns how many were accepted (see the class doc for full)."""
        n = len(samples)
        if n == 0:
            return 0
        cap = self._capacity
        with self._lock:
            if self._written == self._read:
                self._origin = self._written  # empty: start again on pages already resident
            free = cap - (self._written - self._read)
            if n > free:
                self.overruns += 1
                if self._mode == "capture":
                    if n > cap:
                        # Only the newest `cap` samples can survive at all.
                        self.dropped_samples += (n - cap) + (cap - free)
                        samples = samples[n - cap:]
                        n = cap
                        self._read = self._written  # everything queued is dropped too
                    else:
                        drop = n - free
                        self.dropped_samples += drop
                        self._read += drop
                else:
                    self.dropped_samples += n - free
                    samples = samples[:free]
                    n = free
                    if n == 0:
                        return 0
            start = (self._written - self._origin) % cap
            if start + n <= cap:  # the usual case: one contiguous copy
                self._buf[start:start + n] = samples
            else:
                first = cap - start
                self._buf[start:] = samples[:first]
                self._buf[:n - first] = samples[first:n]
            self._written += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to len(out) oldest samples into `out`; returns the count (no allocation)."""
        want = len(out)
        if want == 0:
            return 0
        cap = self._capacity
        with self._lock:
            n = self._written - self._read
            if n >= want:
                n = want
            else:
                self.underruns += 1
            if n:
                start = (self._read - self._origin) % cap
                if start + n <= cap:  # the usual case: one contiguous copy
                    out[:n] = self._buf[start:start + n]
                else:
                    first = cap - start
                    out[:first] = self._buf[start:]
                    out[first:n] = self._buf[:n - first]
                self._read += n
        return n

    def read(self, count: int) -> np.ndarray:
        """Up to `count` oldest samples as a new array (allocates; not for callbacks)."""
        out = np.empty(count, dtype=np.int16)
        n = self.read_into(out)
        return out[:n]

    def scale_newest(self, factors: np.ndarray, since: int = 0) -> int:
        """Multiply the newest queued samples in place by `factors`, whose last entry meets the
        newest sample; samples already read or before position `since` are left alone.
        Returns how many were scaled (playback fades an item's end this way)."""
        with self._lock:
            lo = max(self._read, since, self._written - len(factors))
            k = self._written - lo
            if k <= 0:
                return 0
            f = factors[len(factors) - k:]
            cap = self._capacity
            start = (lo - self._origin) % cap
            first = min(k, cap - start)
            seg = self._buf[start:start + first]
            seg[:] = seg * f[:first]
            if first < k:
                seg = self._buf[:k - first]
                seg[:] = seg * f[first:]
        return k

    def skip_to(self, position: int) -> int:
        """Drop queued samples up to `position` (a `total_written` value seen earlier);
        returns how many. Samples written after that position stay queued."""
        with self._lock:
            target = min(position, self._written)
            n = max(0, target - self._read)
            self._read += n
        return n

    def clear(self) -> int:
        """Drop everything queued (not counted as dropped); returns how many samples."""
        with self._lock:
            n = self._written - self._read
            self._read = self._written
        return n

    def reset_counters(self) -> None:
        """Zero the overrun, underrun and dropped counters (positions are kept)."""
        self.overruns = self.underruns = self.dropped_samples = 0

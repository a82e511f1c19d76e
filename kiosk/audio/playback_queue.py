"""What waits for the speaker: answer items in the jitter ring, the cue, and how each device
block is rendered from them.

`PlaybackQueue` keeps the per-item bookkeeping (where each item starts and ends in the ring,
how much of it reached the device, which items were flushed) and the format-dependent buffers
(`DeviceBuffers`, swapped as one object when the device format changes). `render` is the
audio thread's step: the next block of device frames, faded and mixed. It owns no stream and
knows no listener: `kiosk.audio.playback.Playback` owns the stream, calls in, and hands the
(kind, item_id) notes it gets back to its listener.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kiosk.audio.devices import reported_latency_s
from kiosk.audio.resample import StreamResampler
from kiosk.audio.ringbuffer import RingBuffer
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.settings import AudioSettings

FADE_MS = 5
BLOCK_MS = 20  # output callback block; flush takes effect within one of these
_KEEP_ITEMS = 64  # finished items remembered for played_ms()


def volume_gain(percent: int) -> float:
    """Volume 0-100 to an amplitude factor; squared so the steps sound even to the ear."""
    p = min(100, max(0, int(percent))) / 100.0
    return p * p


@dataclass
class _Item:
    item_id: str
    start: int  # ring position of the item's first sample (device rate)
    resampler: StreamResampler
    end: int | None = None  # ring position after its last sample, once end_item was called
    written_in: int = 0  # 24 kHz samples accepted from write()
    played: int = 0  # device samples handed to the device
    started: bool = False
    gain: np.float32 = np.float32(1.0)  # the answer volume when the item began


class DeviceBuffers:
    """Format-dependent buffers, swapped as one object when the device is reopened."""

    def __init__(self, settings: AudioSettings, rate_hz: int, channels: int) -> None:
        self.rate_hz = rate_hz
        self.channels = channels
        self.block = rate_hz * BLOCK_MS // 1000
        self.fade_n = max(1, rate_hz * FADE_MS // 1000)
        self.ramp_down = np.linspace(1.0, 0.0, self.fade_n, dtype=np.float32)
        self.ramp_up = self.ramp_down[::-1].copy()
        self.prebuffer = rate_hz * settings.prebuffer_ms // 1000
        self.ring = RingBuffer(int(settings.playback_buffer_s * rate_hz), mode="playback")
        big = self.block * 4
        self.max_frames = big
        self.tmp = np.zeros(big, np.int16)
        self.mix = np.zeros(big, np.float32)
        self.out = np.zeros(big * channels, np.int16)
        self.silence = bytes(self.block * channels * 2)  # the idle callback's answer
        # The echo canceller's reference: what was rendered, mono at 24 kHz.
        self.quiet = np.zeros(big, np.int16)
        self.to_24k = (StreamResampler(rate_hz, SAMPLE_RATE_HZ, steady=True)
                       if rate_hz != SAMPLE_RATE_HZ else None)


class PlaybackQueue:
    """Answer items and the cue waiting for the speaker, and the render step that plays them.

    Thread-safe: the caller's threads queue and flush, the audio thread renders; item
    bookkeeping is guarded by one lock held for microseconds. The cue is swapped as one
    reference, without the lock.
    """

    def __init__(self, settings: AudioSettings) -> None:
        self._settings = settings
        self.dev = DeviceBuffers(settings, SAMPLE_RATE_HZ, 1)
        self._lock = threading.Lock()  # item bookkeeping; held for microseconds
        self._items: list[_Item] = []  # queued or playing, in order
        self._done: dict[str, _Item] = {}  # finished or flushed, newest last
        self._flushed_ids: set[str] = set()
        self._running = False
        self._flush_to: int | None = None  # ring position a flush drops up to (callback)
        self._cue: np.ndarray | None = None  # float32 at device rate, already scaled
        self._cue_pos = 0
        self._busy_until = 0.0
        # PortAudio's clock of the latest callback: the device's output latency is read from it
        # (only when audio ends, to know how long it is still audible).
        self._time_info: dict = {}
        self.underruns = 0
        """Blocks where an unfinished item had run dry (silence was played)."""

    # -- device format -------------------------------------------------------------------

    def reset(self, device_rate_hz: int, channels: int) -> None:
        """New buffers for a device format; drops what is queued."""
        with self._lock:
            self.dev = DeviceBuffers(self._settings, device_rate_hz, channels)
            self._forget_queue()

    def drop_all(self) -> list[str]:
        """Drop what is queued (the stream closed); returns the ids of the items dropped."""
        with self._lock:
            gone = [item.item_id for item in self._items]
            self._forget_queue()
        return gone

    def release_if_idle(self) -> None:
        """Rebuild the buffers when nothing is queued, so their pages return to the system
        (the answer ring is two minutes long)."""
        with self._lock:
            dev = self.dev
            if not self._items and self._cue is None:
                self.dev = DeviceBuffers(self._settings, dev.rate_hz, dev.channels)

    # -- answer items --------------------------------------------------------------------

    def write(self, item_id: str, samples: np.ndarray, gain: np.float32) -> None:
        """Queue 24 kHz samples of an item at `gain` (taken when the item begins). Audio of
        a flushed item is ignored."""
        with self._lock:
            if item_id in self._flushed_ids:
                return
            dev = self.dev
            item = self._items[-1] if self._items else None
            if item is None or item.item_id != item_id or item.end is not None:
                if item is not None and item.end is None:
                    self._end_locked(item)  # a new item implies the previous one is complete
                item = _Item(item_id, dev.ring.total_written,
                             StreamResampler(SAMPLE_RATE_HZ, dev.rate_hz), gain=gain)
                self._items.append(item)
            item.written_in += len(samples)
            data = self._to_device(item, samples)
            if dev.ring.total_written == item.start:  # the item's first audio: fade it in
                data = _fade_in(data, dev.ramp_up)
            dev.ring.write(data)

    def end_item(self, item_id: str) -> bool:
        """Mark the item complete; True when it had nothing to play (it is already done)."""
        with self._lock:
            for item in self._items:
                if item.item_id == item_id and item.end is None:
                    self._end_locked(item)
                    if item.end == item.start:  # nothing to play at all
                        self._items.remove(item)
                        self._remember(item)
                        return True
                    break
        return False

    def flush(self, keep_cue: bool, stream_active: Callable[[], bool]) -> tuple[str | None, int]:
        """Drop everything queued (and the cue, unless `keep_cue`); returns the id of the
        item that was playing (None if none) and its ms played.

        While the stream runs (`stream_active()`), the next render fades out what it hands
        over next and skips the rest of what was queued now; otherwise the ring is cleared."""
        with self._lock:
            current = next((i for i in self._items if i.started), None)
            if current is None and self._items:
                current = self._items[0]
            ring = self.dev.ring
            if self._running and stream_active():
                self._flush_to = ring.total_written
            else:
                ring.clear()
            if not keep_cue:
                self._cue = None
            self._running = False
            for item in self._items:
                self._flushed_ids.add(item.item_id)
                self._remember(item)
            self._items.clear()
            while len(self._flushed_ids) > _KEEP_ITEMS:
                self._flushed_ids.pop()
            played = self._played_ms_of(current) if current is not None else 0
        return (current.item_id if current is not None else None), played

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of this item that reached the device (0 for unknown items)."""
        with self._lock:
            item = next((i for i in self._items if i.item_id == item_id), None)
            item = item or self._done.get(item_id)
        return self._played_ms_of(item) if item else 0

    @property
    def busy(self) -> bool:
        """True while answer or cue audio is queued or playing, plus the device's latency."""
        return bool(self._items) or self._cue is not None or \
            time.monotonic() < self._busy_until

    @property
    def ahead_s(self) -> float:
        """Seconds of answer audio queued and not yet handed to the device (0 once flushed)."""
        dev = self.dev
        if not self._items or self._flush_to is not None:
            return 0.0
        return dev.ring.available / dev.rate_hz

    # -- cue -----------------------------------------------------------------------------

    def set_cue(self, pcm_24k: np.ndarray, gain: float) -> None:
        """Mix a short sound (24 kHz int16) over whatever plays; replaces a running cue."""
        pcm = np.asarray(pcm_24k, dtype=np.int16)
        dev = self.dev
        if dev.rate_hz != SAMPLE_RATE_HZ:
            rs = StreamResampler(SAMPLE_RATE_HZ, dev.rate_hz)
            pcm = np.concatenate([rs.process(pcm), rs.process(pcm[:0], last=True)])
        cue = pcm.astype(np.float32) * float(gain)
        self._cue_pos = 0
        self._cue = cue  # one reference swap: the callback sees the old or the new cue

    # -- render (audio thread) -----------------------------------------------------------

    def render(self, dev: DeviceBuffers, n: int, now: float, time_info: dict,
               notes: list[tuple[str, str]]) -> np.ndarray | None:
        """The next `n` device frames (int16, interleaved), or None for silence; item events
        are appended to `notes` as (kind, item_id).

        The ring holds answer audio ready for the device (rate and volume applied in
        `write`), so a plain block is one copy; floats are only used to fade and mix cues.
        """
        self._time_info = time_info
        tmp = dev.tmp
        got = 0
        fade = None  # a ramp over the last `got` samples (flush, or an underrun's cut)
        with self._lock:
            r0 = dev.ring.total_read
            if self._flush_to is not None:
                want = min(n, dev.fade_n, max(0, self._flush_to - r0))
                got = dev.ring.read_into(tmp[:want])
                fade = dev.ramp_down[:got]
                dev.ring.skip_to(self._flush_to)
                self._flush_to = None
            else:
                if not self._running and self._items:
                    head = self._items[0]
                    if dev.ring.available >= dev.prebuffer or head.end is not None:
                        self._running = True
                if self._running:
                    got = dev.ring.read_into(tmp[:n])
                    if got < n and any(i.end is None for i in self._items):
                        self.underruns += 1
                        k = min(got, dev.fade_n)  # soften the cut into silence
                        fade = dev.ramp_down[dev.fade_n - k:]
                    self._account(dev, r0, r0 + got, now, notes)
                    if not self._items:
                        self._running = False
        cue = self._cue
        if cue is None and fade is None and got == n and dev.channels == 1:
            return tmp[:n]  # the common case while an answer plays
        if got == 0 and cue is None:
            return None
        mix = dev.mix[:n]
        np.copyto(mix[:got], tmp[:got], casting="unsafe")
        mix[got:].fill(0.0)
        if fade is not None and len(fade):
            mix[got - len(fade):got] *= fade
        if cue is not None:
            pos = self._cue_pos
            k = min(n, len(cue) - pos)
            mix[:k] += cue[pos:pos + k]
            self._cue_pos = pos + k
            if pos + k >= len(cue):
                self._cue = None
                self._busy_until = max(self._busy_until, now + self._tail_s())
            np.clip(mix, -32768.0, 32767.0, out=mix)  # only a mix can exceed full scale
        out = dev.out[:n * dev.channels]
        for ch in range(dev.channels):
            np.copyto(out[ch::dev.channels], mix, casting="unsafe")
        return out

    def _account(self, dev: DeviceBuffers, r0: int, r1: int, now: float,
                 notes: list[tuple[str, str]]) -> None:
        """Credit samples [r0, r1) to their items; note started/drained. Lock held."""
        while self._items:
            item = self._items[0]
            lo = max(r0, item.start)
            hi = r1 if item.end is None else min(r1, item.end)
            if hi > lo:
                if not item.started:
                    item.started = True
                    notes.append(("started", item.item_id))
                item.played += hi - lo
            if item.end is not None and r1 >= item.end:
                self._items.pop(0)
                self._remember(item)
                if item.started:
                    self._busy_until = max(self._busy_until, now + self._tail_s())
                notes.append(("drained", item.item_id))
                continue
            break

    # -- helpers -------------------------------------------------------------------------

    def _end_locked(self, item: _Item) -> None:
        dev = self.dev
        dev.ring.write(self._to_device(item, np.zeros(0, np.int16), last=True))
        item.end = dev.ring.total_written
        # Fade out the item's last 5 ms in place, as far as they still wait in the ring (if
        # the item ran dry before its end, the callback already softened that cut).
        dev.ring.scale_newest(dev.ramp_down, since=item.start)

    @staticmethod
    def _to_device(item: _Item, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """24 kHz answer audio -> the device's rate, at the answer volume."""
        data = item.resampler.process(samples, last=last)
        if item.gain != 1.0 and len(data):
            data = (data * item.gain).astype(np.int16)
        return data

    def _played_ms_of(self, item: _Item) -> int:
        played_ms = item.played * 1000 // self.dev.rate_hz
        written_ms = item.written_in * 1000 // SAMPLE_RATE_HZ
        return int(min(played_ms, written_ms))

    def _remember(self, item: _Item) -> None:
        self._done[item.item_id] = item
        while len(self._done) > _KEEP_ITEMS:
            self._done.pop(next(iter(self._done)))

    def _forget_queue(self) -> None:
        self.dev.ring.clear()
        for item in self._items:
            self._remember(item)
        self._items.clear()
        self._running = False
        self._flush_to = None
        self._cue = None

    def _tail_s(self) -> float:
        """Seconds until what was handed over last is heard (for the echo gate's tail)."""
        return reported_latency_s(self._time_info, "output") + 0.05


def _fade_in(data: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    k = min(len(data), len(ramp))
    out = np.array(data, dtype=np.int16, copy=True)
    out[:k] = (out[:k] * ramp[:k]).astype(np.int16)
    return out

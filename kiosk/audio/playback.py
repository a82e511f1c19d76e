"""The speaker path: answer audio -> jitter ring -> PortAudio callback, with cues mixed in.

Answer audio arrives from the network in bursts (often faster than real time). `write()`
resamples it to the device rate if needed, applies the volume, fades its first 5 ms in and
queues it in a ring of `playback_buffer_s`; `end_item` fades the last 5 ms out where they
wait in the ring. The callback starts an item once `prebuffer_ms` is queued or the item is
complete, plays silence on underruns (counted, the cut softened), fades out within one block
on `flush`, mixes a cue on top, and records per item how many samples really went to the
device. While only answer audio plays, a block is one copy out of the ring.

Item events go straight to the listener, from the audio thread: ``("started", item_id)`` when
the item's first sample is handed to the device, ``("drained", item_id)`` when it has played
out after `end_item`, ``("flushed", item_id)`` after `flush`. The listener must only post and
return (the conversation hands them to its loop with `call_soon_threadsafe`); it is called
after the playback's own lock is released.

Example::

    out = Playback(AudioSettings(volume=80))
    out.open(pa, find_device(pa, "USB", "output"))
    out.write("item_1", pcm_bytes); out.end_item("item_1")
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyaudio

from kiosk.audio.devices import (
    DeviceInfo,
    choose_format,
    close_stream,
    open_stream,
    stream_is_active,
)
from kiosk.audio.resample import StreamResampler
from kiosk.audio.ringbuffer import RingBuffer
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.settings import AudioSettings

Listener = Callable[[str, str], None]
log = logging.getLogger(__name__)

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


class _Device:
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


class Playback:
    """Speaker output implementing `kiosk.ports.PlaybackPort`, plus cue mixing."""

    def __init__(self, settings: AudioSettings) -> None:
        self._settings = settings
        self._dev = _Device(settings, SAMPLE_RATE_HZ, 1)
        self._stream: pyaudio.Stream | None = None
        self._pa: pyaudio.PyAudio | None = None  # for reopening after an idle pause
        self._device: DeviceInfo | None = None
        self._lock = threading.Lock()  # item bookkeeping; held for microseconds
        self._items: list[_Item] = []  # queued or playing, in order
        self._done: dict[str, _Item] = {}  # finished or flushed, newest last
        self._flushed_ids: set[str] = set()
        self._running = False
        self._flush_to: int | None = None  # ring position a flush drops up to (callback)
        # A numpy float32: a Python float would make every multiply a slow mixed-type one.
        self._gain = np.float32(volume_gain(settings.volume))
        self._cue: np.ndarray | None = None  # float32 at device rate, already scaled
        self._cue_pos = 0
        self._busy_until = 0.0
        # PortAudio's clock of the latest callback: the device's output latency is read from it
        # (only when audio ends, to know how long it is still audible).
        self._time_info: dict = {}
        self._listener: Listener | None = None
        self._wake: Callable[[], None] | None = None  # "I need the stream": wakes the engine
        # Who hears what the speaker plays (the echo canceller), from the callback.
        self._reference: Callable[[np.ndarray, float], None] | None = None
        self.device_name: str | None = None
        self.last_callback_at = 0.0
        self.callbacks = 0
        self.underruns = 0
        """Blocks where an unfinished item had run dry (silence was played)."""
        self.callback_errors = 0
        """Callbacks that raised (each one played silence); the engine reports them."""
        self.last_callback_error: BaseException | None = None

    # -- device side -------------------------------------------------------------------

    def prepare(self, device_rate_hz: int, channels: int = 1) -> None:
        """Set up buffers for a device format without a stream (tests, bench). Drops queue."""
        with self._lock:
            self._dev = _Device(self._settings, device_rate_hz, channels)
            self._forget_queue()

    def open(self, pa: pyaudio.PyAudio, device: DeviceInfo, channels: int | None = None) -> None:
        """Open and start the output stream (24 kHz if possible, else the device's rate)."""
        self.close()
        rate, ch = choose_format(pa, device, "output", channels)
        self.prepare(rate, ch)
        self.last_callback_at = time.monotonic()
        self._stream = open_stream(pa, device, "output", rate, ch, self._dev.block,
                                   self.callback)
        self._pa, self._device = pa, device
        self.device_name = device.name

    def close(self) -> None:
        """Close the stream (abort: a stalled device must not hang us); the queue is dropped
        and an item that was playing is reported as flushed."""
        stream, self._stream = self._stream, None
        close_stream(stream)
        with self._lock:
            gone = [item.item_id for item in self._items]
            self._forget_queue()
        for item_id in gone:
            self._emit("flushed", item_id)

    def shutdown(self) -> None:
        """Close the stream (end of the process)."""
        self.close()
        self._listener = None

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def stream_active(self) -> bool:
        """PortAudio still runs the stream (False after a host error ended it, or paused)."""
        return stream_is_active(self._stream)

    def pause(self) -> None:
        """Close the stream while nothing plays: no callbacks, no sound-server threads. When
        nothing is queued the buffers are rebuilt, so their pages return to the system (the
        answer ring is two minutes long)."""
        stream, self._stream = self._stream, None
        close_stream(stream)
        with self._lock:
            dev = self._dev
            if not self._items and self._cue is None:
                self._dev = _Device(self._settings, dev.rate_hz, dev.channels)

    def resume(self, pa: pyaudio.PyAudio, device: DeviceInfo) -> None:
        """Open the stream again (1-5 ms to the first callback through PulseAudio), on `pa`
        (PortAudio may have been restarted meanwhile). Keeps what is queued (the chime that
        asked for the stream) when the device still offers the same format. Raises
        `AudioDeviceError`."""
        if self._stream is not None:
            return
        rate, ch = choose_format(pa, device, "output", None)
        if (self._dev.rate_hz, self._dev.channels) != (rate, ch):
            self.prepare(rate, ch)
        self.last_callback_at = time.monotonic()  # grace period until the first callback
        self._stream = open_stream(pa, device, "output", rate, ch, self._dev.block,
                                   self.callback)
        self._pa, self._device = pa, device
        self.device_name = device.name

    def set_wake(self, wake: Callable[[], None] | None) -> None:
        """Called (from any thread, must not block) when this side needs a running stream."""
        self._wake = wake

    def set_reference(self, reference: Callable[[np.ndarray, float], None] | None) -> None:
        """`reference(mono_24k, dac_time)` receives every block the callback renders (silence
        included), with the monotonic time its first sample leaves the speaker; called from
        the audio thread, it must not block."""
        self._reference = reference

    @property
    def device_rate_hz(self) -> int:
        return self._dev.rate_hz

    @property
    def channels(self) -> int:
        return self._dev.channels

    # -- PlaybackPort ------------------------------------------------------------------

    def set_listener(self, listener: Listener | None) -> None:
        self._listener = listener

    def _emit(self, kind: str, item_id: str) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener(kind, item_id)
        except Exception:  # a broken listener must not break the audio
            log.exception("playback listener failed on (%s, %s)", kind, item_id)

    def set_volume(self, percent: int) -> None:
        """Answer volume 0-100 (cues have their own `cue_volume`) from the next answer item
        on: an item keeps the volume it began with, so a change (the night profile) never
        jumps in the middle of a sentence.

        The volume is applied in `write`, once per chunk, so the callback only copies.
        """
        self._gain = np.float32(volume_gain(percent))

    def write(self, item_id: str, pcm: bytes) -> None:
        """Queue 24 kHz PCM16 of an assistant item. Audio of a flushed item is ignored."""
        samples = np.frombuffer(pcm, dtype=np.int16)
        with self._lock:
            if item_id in self._flushed_ids:
                return
            dev = self._dev
            item = self._items[-1] if self._items else None
            if item is None or item.item_id != item_id or item.end is not None:
                if item is not None and item.end is None:
                    self._end_locked(item)  # a new item implies the previous one is complete
                item = _Item(item_id, dev.ring.total_written,
                             StreamResampler(SAMPLE_RATE_HZ, dev.rate_hz), gain=self._gain)
                self._items.append(item)
            item.written_in += len(samples)
            data = self._to_device(item, samples)
            if dev.ring.total_written == item.start:  # the item's first audio: fade it in
                data = self._fade_in(data, dev.ramp_up)
            dev.ring.write(data)
        wake = self._wake
        if wake is not None:
            wake()

    def end_item(self, item_id: str) -> None:
        """The item's audio is complete: play it out even if it is below the prebuffer."""
        empty = False
        with self._lock:
            for item in self._items:
                if item.item_id == item_id and item.end is None:
                    self._end_locked(item)
                    if item.end == item.start:  # nothing to play at all
                        self._items.remove(item)
                        self._remember(item)
                        empty = True
                    break
        if empty:
            self._emit("drained", item_id)

    def flush(self, keep_cue: bool = False) -> int:
        """Barge-in: fade out within one block, drop everything queued (and the cue, unless
        `keep_cue`); returns ms played of the item that was playing (never more than was
        written).

        Never waits for the device: the next callback fades out what it hands over next and
        skips the rest of what was queued *now* (audio written after this call plays)."""
        with self._lock:
            current = next((i for i in self._items if i.started), None)
            if current is None and self._items:
                current = self._items[0]
            ring = self._dev.ring
            if self._running and self.stream_active():
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
        if current is not None:
            self._emit("flushed", current.item_id)
        return played

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

    # -- cues ----------------------------------------------------------------------------

    def play_cue(self, pcm_24k: np.ndarray, gain: float = 1.0) -> None:
        """Mix a short sound (24 kHz int16) over whatever plays; replaces a running cue."""
        pcm = np.asarray(pcm_24k, dtype=np.int16)
        dev = self._dev
        if dev.rate_hz != SAMPLE_RATE_HZ:
            rs = StreamResampler(SAMPLE_RATE_HZ, dev.rate_hz)
            pcm = np.concatenate([rs.process(pcm), rs.process(pcm[:0], last=True)])
        cue = pcm.astype(np.float32) * float(gain)
        self._cue_pos = 0
        self._cue = cue  # one reference swap: the callback sees the old or the new cue
        wake = self._wake
        if wake is not None:
            wake()

    # -- callback ------------------------------------------------------------------------

    def callback(self, in_data: bytes | None, frame_count: int, time_info: dict,
                 status: int) -> tuple[bytes, int]:
        """PortAudio's output callback: never blocks for long, never raises."""
        now = time.monotonic()
        self.last_callback_at = now
        self.callbacks += 1
        dev = self._dev
        n = min(frame_count, dev.max_frames)
        notes: list[tuple[str, str]] = []
        try:
            block = self._render(dev, n, now, time_info, notes)
        except Exception as exc:  # PyAudio would swallow it; play silence, let the engine see
            self.callback_errors += 1
            self.last_callback_error = exc
            block = None
        for kind, item_id in notes:
            self._emit(kind, item_id)
        reference = self._reference
        if reference is not None:
            try:
                self._feed(reference, dev, block, n, now, time_info)
            except Exception as exc:
                self.callback_errors += 1
                self.last_callback_error = exc
        if block is None:  # nothing to play: the daemon's usual state
            if frame_count == dev.block:
                return dev.silence, pyaudio.paContinue
            return bytes(frame_count * dev.channels * 2), pyaudio.paContinue
        # PyAudio only accepts `bytes` here (it rejects buffers with a release hook, which
        # includes numpy views), so this one copy per block is unavoidable.
        data = block.tobytes()
        if n < frame_count:  # a host asking for more than 4 blocks: pad, never stop
            data += bytes((frame_count - n) * dev.channels * 2)
        return data, pyaudio.paContinue

    @staticmethod
    def _feed(reference: Callable[[np.ndarray, float], None], dev: _Device,
              block: np.ndarray | None, n: int, now: float, time_info: dict) -> None:
        """Hand the block just rendered (mono, 24 kHz) to the reference listener with the
        time its first sample leaves the speaker."""
        mono = dev.quiet[:n] if block is None else block[:n * dev.channels:dev.channels]
        if dev.to_24k is not None:
            mono = dev.to_24k.process(np.ascontiguousarray(mono))
        reference(mono, now + _output_latency_s(time_info))

    def _render(self, dev: _Device, n: int, now: float, time_info: dict,
                notes: list[tuple[str, str]]) -> np.ndarray | None:
        """The next `n` device frames (int16, interleaved), or None for silence.

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

    def _account(self, dev: _Device, r0: int, r1: int, now: float,
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
        dev = self._dev
        dev.ring.write(self._to_device(item, np.zeros(0, np.int16), last=True))
        item.end = dev.ring.total_written
        # Fade out the item's last 5 ms in place, as far as they still wait in the ring (if
        # the item ran dry before its end, the callback already softened that cut).
        dev.ring.scale_newest(dev.ramp_down, since=item.start)

    def _to_device(self, item: _Item, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """24 kHz answer audio -> the device's rate, at the answer volume."""
        data = item.resampler.process(samples, last=last)
        if item.gain != 1.0 and len(data):
            data = (data * item.gain).astype(np.int16)
        return data

    @staticmethod
    def _fade_in(data: np.ndarray, ramp: np.ndarray) -> np.ndarray:
        k = min(len(data), len(ramp))
        out = np.array(data, dtype=np.int16, copy=True)
        out[:k] = (out[:k] * ramp[:k]).astype(np.int16)
        return out

    def _played_ms_of(self, item: _Item) -> int:
        played_ms = item.played * 1000 // self._dev.rate_hz
        written_ms = item.written_in * 1000 // SAMPLE_RATE_HZ
        return int(min(played_ms, written_ms))

    def _remember(self, item: _Item) -> None:
        self._done[item.item_id] = item
        while len(self._done) > _KEEP_ITEMS:
            self._done.pop(next(iter(self._done)))

    def _forget_queue(self) -> None:
        self._dev.ring.clear()
        for item in self._items:
            self._remember(item)
        self._items.clear()
        self._running = False
        self._flush_to = None
        self._cue = None

    def _tail_s(self) -> float:
        """Seconds until what was handed over last is heard (for the echo gate's tail)."""
        return _output_latency_s(self._time_info) + 0.05


def _output_latency_s(time_info: dict) -> float:
    """From the callback to its block leaving the speaker, as PortAudio reports it (0 when
    the host reports nothing; bounded to 0.5 s)."""
    try:
        lat = float(time_info["output_buffer_dac_time"]) - float(time_info["current_time"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    return min(max(lat, 0.0), 0.5)

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
after the queue's lock is released.

This module owns the stream and the listener; the queue, its buffers and the render step are
`kiosk.audio.playback_queue`.

Example::

    out = Playback(AudioSettings(volume=80))
    out.open(pa, find_device(pa, "USB", "output"))
    out.write("item_1", pcm_bytes); out.end_item("item_1")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pyaudio

from kiosk.audio.devices import (
    DeviceInfo,
    choose_format,
    close_stream,
    open_stream,
    reported_latency_s,
    stream_is_active,
)
from kiosk.audio.playback_queue import (
    BLOCK_MS,
    FADE_MS,
    DeviceBuffers,
    PlaybackQueue,
    volume_gain,
)
from kiosk.audio.thread_state import ThreadStatePin
from kiosk.settings import AudioSettings

# BLOCK_MS, FADE_MS and volume_gain live with the queue; they stay importable from here.
__all__ = ["BLOCK_MS", "FADE_MS", "Listener", "Playback", "volume_gain"]

Listener = Callable[[str, str], None]
log = logging.getLogger(__name__)


class Playback:
    """Speaker output implementing `kiosk.ports.PlaybackPort`, plus cue mixing."""

    def __init__(self, settings: AudioSettings) -> None:
        self._q = PlaybackQueue(settings)
        self._stream: pyaudio.Stream | None = None
        self._pa: pyaudio.PyAudio | None = None  # for reopening after an idle pause
        self._device: DeviceInfo | None = None
        # A numpy float32: a Python float would make every multiply a slow mixed-type one.
        self._gain = np.float32(volume_gain(settings.volume))
        self._listener: Listener | None = None
        self._wake: Callable[[], None] | None = None  # "I need the stream": wakes the engine
        # Who hears what the speaker plays (the echo canceller), from the callback.
        self._reference: Callable[[np.ndarray, float], None] | None = None
        self.device_name: str | None = None
        self.last_callback_at = 0.0
        self.callbacks = 0
        self.callback_errors = 0
        """Callbacks that raised (each one played silence); the engine reports them."""
        self.last_callback_error: BaseException | None = None
        self.thread_state = ThreadStatePin()  # one Python thread state per stream

    @property
    def underruns(self) -> int:
        """Blocks where an unfinished item had run dry (silence was played)."""
        return self._q.underruns

    # -- device side -------------------------------------------------------------------

    def prepare(self, device_rate_hz: int, channels: int = 1) -> None:
        """Set up buffers for a device format without a stream (tests, bench). Drops queue."""
        self._q.reset(device_rate_hz, channels)

    def open(self, pa: pyaudio.PyAudio, device: DeviceInfo, channels: int | None = None) -> None:
        """Open and start the output stream (24 kHz if possible, else the device's rate)."""
        self.close()
        rate, ch = choose_format(pa, device, "output", channels)
        self.prepare(rate, ch)
        self.last_callback_at = time.monotonic()
        self._stream = open_stream(pa, device, "output", rate, ch, self._q.dev.block,
                                   self.callback, self.thread_state)
        self._pa, self._device = pa, device
        self.device_name = device.name

    def close(self) -> None:
        """Close the stream (abort: a stalled device must not hang us); the queue is dropped
        and an item that was playing is reported as flushed."""
        close_stream(self._detach())
        for item_id in self._q.drop_all():
            self._emit("flushed", item_id)

    def shutdown(self) -> None:
        """Close the stream (end of the process)."""
        self.close()
        self._listener = None

    def _detach(self) -> pyaudio.Stream | None:
        """The stream, no longer ours (`is_open` is False), for `close_stream`; its callback
        thread has given its Python thread state back first (two blocks' wait at most)."""
        self.thread_state.drop(self.stream_active())
        stream, self._stream = self._stream, None
        return stream

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
        close_stream(self._detach())
        self._q.release_if_idle()

    def resume(self, pa: pyaudio.PyAudio, device: DeviceInfo) -> None:
        """Open the stream again (1-5 ms to the first callback through PulseAudio), on `pa`
        (PortAudio may have been restarted meanwhile). Keeps what is queued (the chime that
        asked for the stream) when the device still offers the same format. Raises
        `AudioDeviceError`."""
        if self._stream is not None:
            return
        rate, ch = choose_format(pa, device, "output", None)
        if (self._q.dev.rate_hz, self._q.dev.channels) != (rate, ch):
            self.prepare(rate, ch)
        self.last_callback_at = time.monotonic()  # grace period until the first callback
        self._stream = open_stream(pa, device, "output", rate, ch, self._q.dev.block,
                                   self.callback, self.thread_state)
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
        return self._q.dev.rate_hz

    @property
    def channels(self) -> int:
        return self._q.dev.channels

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
        # Wake the engine only when the speaker goes from nothing to play to busy: it opens
        # the stream then, and while anything is queued it keeps looking by itself. One wake
        # per delta cost the supervisor thread ~30 wake-ups per second while speaking.
        starts = not self._q.busy
        self._q.write(item_id, np.frombuffer(pcm, dtype=np.int16), self._gain)
        wake = self._wake
        if starts and wake is not None:
            wake()

    def end_item(self, item_id: str) -> None:
        """The item's audio is complete: play it out even if it is below the prebuffer."""
        if self._q.end_item(item_id):
            self._emit("drained", item_id)

    def flush(self, keep_cue: bool = False) -> int:
        """Barge-in: fade out within one block, drop everything queued (and the cue, unless
        `keep_cue`); returns ms played of the item that was playing (never more than was
        written).

        Never waits for the device: the next callback fades out what it hands over next and
        skips the rest of what was queued *now* (audio written after this call plays)."""
        current, played = self._q.flush(keep_cue, self.stream_active)
        if current is not None:
            self._emit("flushed", current)
        wake = self._wake
        if wake is not None:  # the engine reopens the microphone it rested for the answer
            wake()
        return played

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of this item that reached the device (0 for unknown items)."""
        return self._q.played_ms(item_id)

    @property
    def busy(self) -> bool:
        """True while answer or cue audio is queued or playing, plus the device's latency."""
        return self._q.busy

    @property
    def ahead_s(self) -> float:
        """Seconds of answer audio queued and not yet handed to the device (0 once flushed)."""
        return self._q.ahead_s

    # -- cues ----------------------------------------------------------------------------

    def play_cue(self, pcm_24k: np.ndarray, gain: float = 1.0) -> None:
        """Mix a short sound (24 kHz int16) over whatever plays; replaces a running cue."""
        self._q.set_cue(pcm_24k, gain)
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
        dev = self._q.dev
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

    def _render(self, dev: DeviceBuffers, n: int, now: float, time_info: dict,
                notes: list[tuple[str, str]]) -> np.ndarray | None:
        # The step the callback guards (the engine's tests inject failures here).
        return self._q.render(dev, n, now, time_info, notes)

    @staticmethod
    def _feed(reference: Callable[[np.ndarray, float], None], dev: DeviceBuffers,
              block: np.ndarray | None, n: int, now: float, time_info: dict) -> None:
        """Hand the block just rendered (mono, 24 kHz) to the reference listener with the
        time its first sample leaves the speaker."""
        mono = dev.quiet[:n] if block is None else block[:n * dev.channels:dev.channels]
        if dev.to_24k is not None:
            mono = dev.to_24k.process(np.ascontiguousarray(mono))
        reference(mono, now + reported_latency_s(time_info, "output"))

"""The microphone path: PortAudio callback -> ring -> resample -> 24 kHz mono frames.

The engine opens the input stream when a visit arms the capture (behind the chime: about
40 ms to the first callback through PulseAudio) and closes it once the visit is over. Until
`arm()` the callback only updates the level meter and throws the audio away; nothing is ever
written to disk.

Inside the callback (PortAudio's thread) the work is: downmix to mono and input gain (only
when the device is stereo or a gain is set) and a copy into a preallocated ring, all into
preallocated numpy buffers. The level meter keeps a reference to the latest block and is
computed only when someone reads it. Resampling to 24 kHz happens on the reader's side in
`read_frame`, so the callback stays short and allocation-free.

This module owns the stream, arming, the gates and the level meter; the format-dependent
buffers and the cut into dated frames are `kiosk.audio.capture_pipeline`.

Example::

    cap = Capture(AudioSettings(frame_ms=20))
    cap.open(pa, find_device(pa, "USB", "input"))
    cap.arm()
    frame = cap.read_frame(timeout_s=1.0)   # Frame(pcm=int16[480], captured_at=...)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import pyaudio

from kiosk.audio.capture_pipeline import CapturePipeline
from kiosk.audio.devices import (
    DeviceInfo,
    choose_format,
    close_stream,
    open_stream,
    reported_latency_s,
    stream_is_active,
)
from kiosk.audio.thread_state import ThreadStatePin
from kiosk.ports import Frame
from kiosk.settings import AudioSettings


def dbfs(value: float) -> float:
    """An int16 amplitude as dB relative to full scale (floor -120 dB)."""
    return 20.0 * math.log10(value / 32768.0) if value > 0 else -120.0


class FrameCleaner(Protocol):
    """Works on each frame before it is sent (the echo canceller, `kiosk.audio.echo`)."""

    def clean(self, frame: Frame, input_latency_s: float) -> Frame | None:
        """The frame to send, or None: muted (dropped, as the echo gate drops blocks)."""

    def new_visit(self) -> None: ...


class Capture:
    """Microphone capture implementing `kiosk.ports.CapturePort`.

    `settings.frame_ms` sets the frame length, `input_gain_db` the gain and
    `capture_buffer_s` how much audio is kept while the link to the server is slow (the
    oldest is dropped beyond that, counted in `dropped_samples`).
    """

    def __init__(self, settings: AudioSettings) -> None:
        self._settings = settings
        self._pipe: CapturePipeline | None = None
        self._stream: pyaudio.Stream | None = None
        self._pa: pyaudio.PyAudio | None = None  # for reopening after an idle pause
        self._device: DeviceInfo | None = None
        self._ready = threading.Event()
        self._armed = False
        self._gate_closed = False
        # Echo gate driven by the speaker (engine wires playback.busy here for echo_mode gate):
        # checked in every callback, so it also holds while the session is still connecting.
        self._gate_source: Callable[[], bool] | None = None
        self._listener: Callable[[], None] | None = None  # "audio kept": wakes the uplink
        self._wake: Callable[[], None] | None = None  # "I need the stream": wakes the engine
        self.device_name: str | None = None
        self.last_callback_at = 0.0
        """time.monotonic() of the latest callback (the engine's health check reads it)."""
        self.callbacks = 0
        self.device_overflows = 0
        """Callbacks where PortAudio reported lost input (the host could not keep up)."""
        self.callback_errors = 0
        """Callbacks that raised (their block was lost); the engine reports them."""
        self.last_callback_error: BaseException | None = None
        self._overruns_before = 0  # ring overruns of earlier sessions (arm() resets the ring's)
        self._last_block: tuple[CapturePipeline, bytes] | None = None  # for the level meter
        # The echo canceller's hook (engine wires `EchoControl.clean` for echo_mode aec): runs
        # on the reader's thread, never in the callback.
        self._echo: FrameCleaner | None = None
        self._time_info: dict = {}  # PortAudio's clock of the latest callback (input latency)
        self.thread_state = ThreadStatePin()  # one Python thread state per stream

    # -- device side -------------------------------------------------------------------

    def prepare(self, device_rate_hz: int, channels: int = 1) -> None:
        """Set up buffers for a device format without opening a stream (tests, bench)."""
        if self._pipe is not None:
            self._overruns_before += self._pipe.ring.overruns
        self._pipe = CapturePipeline(self._settings, device_rate_hz, channels)

    def open(self, pa: pyaudio.PyAudio, device: DeviceInfo, channels: int | None = None) -> None:
        """Open and start the input stream on `device` (24 kHz if it can, else resampled).

        `channels` forces a channel count (2 exercises the downmix); None picks mono when the
        device offers it. Raises `AudioDeviceError` when the device cannot be opened.
        """
        self.close()
        rate, ch = choose_format(pa, device, "input", channels)
        self.prepare(rate, ch)
        assert self._pipe is not None
        self.last_callback_at = time.monotonic()  # grace period until the first callback
        self._stream = open_stream(pa, device, "input", rate, ch, self._pipe.block,
                                   self.callback, self.thread_state)
        self._pa, self._device = pa, device
        self.device_name = device.name

    def close(self) -> None:
        """Close the stream (abort, never drain: a stalled device must not hang us)."""
        close_stream(self._detach())

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
        """Close the stream while no visit needs it: no callbacks, no sound-server threads.
        Audio kept so far (armed) and the format are kept for `resume`; when not armed the
        buffers are rebuilt, so their pages return to the system."""
        close_stream(self._detach())
        p = self._pipe
        if p is not None and not self._armed:
            self.prepare(p.rate_hz, p.channels)

    def resume(self, pa: pyaudio.PyAudio, device: DeviceInfo) -> None:
        """Open the stream again (about 40 ms to the first callback through PulseAudio), on
        `pa` (PortAudio may have been restarted meanwhile). Keeps what was captured when the
        device still offers the same format. Raises `AudioDeviceError`."""
        if self._stream is not None:
            return
        p = self._pipe
        if p is not None and pa is self._pa and device.name == self.device_name:
            # This PortAudio opened this device in this format already. Asking again would
            # hold the GIL (PyAudio does) while ALSA opens the device, and stall the speaker's
            # callback: this reopening comes during or right after an answer.
            rate, ch = p.rate_hz, p.channels
        else:
            rate, ch = choose_format(pa, device, "input", None)
        if p is None or (p.rate_hz, p.channels) != (rate, ch):
            self.prepare(rate, ch)
            p = self._pipe
        assert p is not None
        self.last_callback_at = time.monotonic()  # grace period until the first callback
        self._stream = open_stream(pa, device, "input", rate, ch, p.block, self.callback,
                                   self.thread_state)
        self._pa, self._device = pa, device
        self.device_name = device.name

    def set_wake(self, wake: Callable[[], None] | None) -> None:
        """Called (from any thread, must not block) when this side needs a running stream."""
        self._wake = wake

    @property
    def block_samples(self) -> int | None:
        """Device samples per callback (what the stream is opened with)."""
        return self._pipe.block if self._pipe else None

    @property
    def device_rate_hz(self) -> int | None:
        return self._pipe.rate_hz if self._pipe else None

    @property
    def channels(self) -> int | None:
        return self._pipe.channels if self._pipe else None

    def callback(self, in_data: bytes | None, frame_count: int, time_info: dict,
                 status: int) -> tuple[None, int]:
        """PortAudio's input callback: meter, gain, and keep the audio when armed."""
        now = time.monotonic()
        self.last_callback_at = now
        self.callbacks += 1
        self._time_info = time_info
        if status:
            self.device_overflows += 1
        p = self._pipe
        if p is None or not in_data:
            return None, pyaudio.paContinue
        try:
            self._keep(p, in_data, now)
        except Exception as exc:  # PyAudio would swallow it; lose this block, let the engine see
            self.callback_errors += 1
            self.last_callback_error = exc
        return None, pyaudio.paContinue

    def _keep(self, p: CapturePipeline, in_data: bytes, now: float) -> None:
        # PortAudio hands over a fresh immutable bytes object per call: keeping a reference
        # is free, and the meter is computed from it only when read.
        self._last_block = (p, in_data)
        if not self._armed or self._gate_closed or (
                self._gate_source is not None and self._gate_source()):
            return
        p.store(np.frombuffer(in_data, dtype=np.int16), now)
        if not self._ready.is_set():
            self._ready.set()
        listener = self._listener
        if listener is not None:
            listener()

    # -- CapturePort ---------------------------------------------------------------------

    def arm(self) -> None:
        """Start keeping microphone audio; older audio and counters are cleared first."""
        self._armed = False
        p = self._pipe
        if p is not None:
            p.ring.clear()
            self._overruns_before += p.ring.overruns
            p.ring.reset_counters()
            p.resampler.reset()
            p.acc_len = 0
            p.aligned = False
        self._ready.clear()
        echo = self._echo
        if echo is not None:
            echo.new_visit()
        self._armed = True
        wake = self._wake
        if wake is not None:
            wake()

    def disarm(self) -> None:
        """Stop keeping audio and drop the backlog (session over)."""
        self._armed = False
        p = self._pipe
        if p is not None:
            p.ring.clear()
            p.acc_len = 0

    @property
    def armed(self) -> bool:
        return self._armed

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Called from the audio thread after each block kept while armed (must not block)."""
        self._listener = listener

    def set_gate_source(self, source: Callable[[], bool] | None) -> None:
        """Close the gate whenever `source()` is true (e.g. while the speaker plays)."""
        self._gate_source = source

    def set_echo(self, echo: FrameCleaner | None) -> None:
        """Pass every frame through `echo.clean` in `read_frame`; `arm()` tells it of each
        new visit."""
        self._echo = echo

    @property
    def input_latency_s(self) -> float:
        """From sound entering the microphone to its block reaching the callback, as
        PortAudio reports it (0 when the host reports nothing; bounded to 0.5 s)."""
        return reported_latency_s(self._time_info, "input")

    def set_gate(self, closed: bool) -> None:
        """Echo gate: while closed, captured audio is discarded in the callback."""
        self._gate_closed = bool(closed)

    @property
    def gate_closed(self) -> bool:
        return self._gate_closed

    @property
    def dropped_samples(self) -> int:
        """Oldest device samples dropped since `arm()` because the backlog was full."""
        return self._pipe.ring.dropped_samples if self._pipe else 0

    @property
    def overruns(self) -> int:
        """Times audio was lost since start: backlog full, or PortAudio input overflow."""
        ring = self._pipe.ring.overruns if self._pipe else 0
        return self._overruns_before + ring + self.device_overflows

    @property
    def level_dbfs(self) -> tuple[float, float]:
        """(RMS, peak) of the latest callback block in dBFS, after downmix and gain."""
        last = self._last_block
        if last is None:
            return dbfs(0.0), dbfs(0.0)
        p, data = last
        raw = np.frombuffer(data, dtype=np.int16)
        n = len(raw) // p.channels
        mono = p.condition(raw, np.zeros(n, np.int16), np.zeros(n, np.int32),
                           np.zeros(n, np.float32)).astype(np.float32)
        if not len(mono):
            return dbfs(0.0), dbfs(0.0)
        peak = float(np.abs(mono).max())
        rms = math.sqrt(float(np.dot(mono, mono)) / len(mono))
        return dbfs(rms), dbfs(peak)

    def read_frame(self, timeout_s: float) -> Frame | None:
        """Next `frame_ms` of 24 kHz mono audio, or None after `timeout_s` with too little
        (with the echo canceller's work done on this thread, when one is set; a frame it
        mutes is skipped, as the gate skips what it drops)."""
        echo = self._echo
        if echo is None:
            return self._next_frame(timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            frame = self._next_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                return None
            cleaned = echo.clean(frame, self.input_latency_s)
            if cleaned is not None:
                return cleaned

    def _next_frame(self, timeout_s: float) -> Frame | None:
        deadline = None
        while True:
            p = self._pipe
            if p is not None:
                frame = p.take_frame()
                if frame is not None:
                    return frame
                if p.ring.available:
                    continue
            if deadline is None:  # only now: a frame that is ready costs no clock read
                deadline = time.monotonic() + timeout_s
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._ready.wait(remaining)
            self._ready.clear()

"""kiosk.audio.thread_state through real PortAudio streams on the virtual devices: the
callback thread keeps one Python thread state while the stream runs, and frees it when the
stream closes.

What is observed is Python's own per-thread-state storage: a `threading.local` lives in the
thread state, so it keeps its attributes from one callback to the next only when the state
does, and an object held there is freed with the state.
"""

from __future__ import annotations

import threading
import time
import weakref

import pyaudio
import pytest

from kiosk.audio.devices import close_stream, find_device, open_portaudio, open_stream
from kiosk.audio.thread_state import ThreadStatePin
from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE

pytestmark = pytest.mark.audio


class Token:
    """Something to hold in the thread's local storage and watch being freed."""


def _run(direction: str, pin: ThreadStatePin | None, seconds: float = 0.6):
    """Open a stream on a virtual device for `seconds`, then close it; returns what each
    callback saw in its thread-local counter, and a weak reference to the token the first
    callback stored there."""
    local = threading.local()
    seen: list[int] = []
    tokens: list[weakref.ref[Token]] = []
    block = 480  # 20 ms at 24 kHz: many callbacks in a short test

    def callback(data, frames, time_info, status):
        local.n = getattr(local, "n", 0) + 1
        if not hasattr(local, "token"):
            local.token = Token()
            tokens.append(weakref.ref(local.token))
        seen.append(local.n)
        out = bytes(frames * 2) if direction == "output" else None
        return out, pyaudio.paContinue

    pa = open_portaudio()
    try:
        dev = find_device(pa, MIC_DEVICE if direction == "input" else SPEAKER_DEVICE,
                          direction)
        stream = open_stream(pa, dev, direction, 24000, 1, block, callback, pin)
        deadline = time.monotonic() + 10
        while len(seen) < seconds * 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        if pin is not None:
            pin.drop(stream.is_active())
        close_stream(stream)
    finally:
        pa.terminate()
    return seen, tokens


@pytest.mark.parametrize("direction", ["input", "output"])
def test_the_callback_thread_keeps_one_thread_state_while_the_stream_runs(rig, direction):
    pin = ThreadStatePin()
    seen, tokens = _run(direction, pin)
    assert len(seen) >= 20
    # One state: the counter kept counting (the last callbacks, between the state's return
    # and the stream's end, may run on fresh ones again).
    steady = len(seen) - 3
    assert seen[:steady] == list(range(1, steady + 1)), seen
    assert len(tokens) <= 4
    assert all(t() is None for t in tokens), "the thread state outlived its stream"
    assert pin.kept == 0


def test_without_the_pin_each_callback_builds_a_new_thread_state(rig):
    """PyAudio's own behaviour, which the pin exists for (and which this test would stop
    seeing if PyAudio ever kept the state itself)."""
    seen, tokens = _run("input", None)
    assert len(seen) >= 20 and set(seen) == {1}
    assert len(tokens) == len(seen) and all(t() is None for t in tokens)


def test_a_stream_that_stopped_calling_back_is_closed_without_waiting_long():
    """A stalled device: no callback comes to give the state back; the closer waits two
    blocks at most, then counts the state as kept (it ends with its thread)."""
    pin = ThreadStatePin()
    pin.stream_opens(0.025)  # drop waits two blocks and 50 ms: 0.1 s
    entered = threading.Event()
    stop = threading.Event()

    def audio_thread():  # one callback, then the device stalls
        pin.enter()
        entered.set()
        stop.wait(5)

    t = threading.Thread(target=audio_thread)
    t.start()
    try:
        assert entered.wait(5)
        began = time.monotonic()
        pin.drop(stream_running=True)
        assert 0.09 <= time.monotonic() - began < 1.0
        assert pin.kept == 1
    finally:
        stop.set()
        t.join(5)

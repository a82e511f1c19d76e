"""One lasting Python thread state for PortAudio's callback thread, instead of one per call.

PyAudio enters Python from PortAudio's own thread with ``PyGILState_Ensure`` and leaves with
``PyGILState_Release``. On a thread Python did not create, that builds a thread state and
maps its 16 KiB frame stack, then unmaps and frees both, at every callback; unmapping in a
process with several threads interrupts the other CPUs. Measured through PulseAudio here, a
stream whose callback does nothing costs 0.0015-0.002 CPU-s per second more with 100 ms
microphone blocks, 0.0025 more with 20 ms speaker blocks, than with its thread state kept.

`ThreadStatePin.enter()`, first thing in every callback, takes one extra reference on the
thread's state in the first callback (the state then outlives each call) and, once `drop`
was asked for before the stream closes, gives it back from that same thread, so the state is
freed with the stream. Both are the documented C API for threads Python did not create.
"""

from __future__ import annotations

import ctypes
import threading

_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.argtypes = []
_ensure.restype = ctypes.c_int
_release = ctypes.pythonapi.PyGILState_Release
_release.argtypes = [ctypes.c_int]
_release.restype = None


class ThreadStatePin:
    """The extra reference on one stream's callback thread state (one stream at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # enter() on the audio thread vs. drop() on the closer's
        self._state: int | None = None  # what our PyGILState_Ensure returned, while held
        self._thread: int | None = None  # the callback thread that holds it
        self._drop = False
        self._dropped = threading.Event()
        self._block_s = 0.1  # the stream's callback period: how long `drop` waits
        self.kept = 0
        """States left behind because no callback came to drop them (a stalled device)."""

    def stream_opens(self, block_s: float) -> None:
        """Before the stream's first callback (one every `block_s`): the next callback takes
        the reference."""
        with self._lock:
            self._state, self._thread, self._drop = None, None, False
            self._block_s = block_s
            self._dropped.clear()

    def enter(self) -> None:
        """First thing in every callback (GIL held, on PortAudio's thread)."""
        me = threading.get_ident()
        if self._thread == me and not self._drop:
            return  # held already: the steady case costs no lock
        with self._lock:
            if self._drop:
                if self._state is not None and self._thread == me:
                    _release(self._state)
                    self._state = None
                self._dropped.set()
            elif self._thread is None:
                self._thread = me
                self._state = _ensure()  # the thread holds the GIL: this only counts up

    def drop(self, stream_running: bool) -> None:
        """Before closing the stream: the next callback gives the reference back; waits for
        it two blocks at most (only while the stream still runs)."""
        with self._lock:
            self._drop = True
            if self._state is None:
                return
        if stream_running:
            self._dropped.wait(2 * self._block_s + 0.05)
        with self._lock:
            if self._state is not None:  # no callback came: the thread ends with it kept
                self._state = None
                self.kept += 1

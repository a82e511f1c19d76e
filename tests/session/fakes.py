"""Test doubles beside the real clients: a fake AudioPort (capture ring fed by the test, a
playback that 'plays' in real time on its own thread) and a recorder of posted events."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from kiosk.events import Event
from kiosk.ports import Frame

RATE = 24000


class FakeCapture:
    """A capture ring the test feeds with `speak(pcm)`; honours arm/disarm and the gate."""

    def __init__(self, frame_ms: int = 20, capacity_s: float = 10.0) -> None:
        self.frame = RATE * frame_ms // 1000
        self.capacity = int(capacity_s * RATE) // self.frame
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self.armed = False
        self.gate_closed = False
        self.gate_history: list[bool] = []
        self.discarded_by_gate = 0
        self._dropped = 0
        self._listener: Callable[[], None] | None = None

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        self._listener = listener

    def arm(self) -> None:
        with self._cond:
            self._frames.clear()
            self.armed = True

    def disarm(self) -> None:
        with self._cond:
            self._frames.clear()
            self.armed = False
            self._cond.notify_all()

    def speak(self, pcm: np.ndarray) -> None:
        """The microphone hears `pcm` (int16): appended as frames, as the engine would."""
        pcm = pcm.astype(np.int16)
        with self._cond:
            for start in range(0, len(pcm) - self.frame + 1, self.frame):
                if not self.armed:
                    return
                if self.gate_closed:
                    self.discarded_by_gate += self.frame
                    continue
                if len(self._frames) >= self.capacity:
                    self._frames.popleft()
                    self._dropped += self.frame
                self._frames.append(Frame(pcm[start:start + self.frame].copy(),
                                          time.monotonic()))
            self._cond.notify_all()
        listener = self._listener
        if listener is not None and self.armed:
            listener()

    def read_frame(self, timeout_s: float) -> Frame | None:
        with self._cond:
            if not self._frames and timeout_s > 0:
                self._cond.wait_for(lambda: bool(self._frames), timeout_s)
            return self._frames.popleft() if self._frames else None

    def set_gate(self, closed: bool) -> None:
        with self._cond:
            if closed != self.gate_closed:
                self.gate_history.append(closed)
            self.gate_closed = closed

    @property
    def dropped_samples(self) -> int:
        return self._dropped

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._frames)


class FakePlayback:
    """Plays written audio at `speed` x real time in 10 ms steps on its own thread, calling the
    listener like the real engine ("started", "drained", "flushed")."""

    STEP = RATE // 100  # 10 ms

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, np.ndarray]] = deque()
        self._ended: set[str] = set()
        self._listener: Callable[[str, str], None] | None = None
        self._played: dict[str, int] = {}  # samples played per item
        self._written: dict[str, int] = {}
        self._current: str | None = None
        self._started: set[str] = set()
        self.flushes: list[tuple[str | None, int]] = []  # (item, ms played) per flush
        self.played_audio: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True, name="fake-playback")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(2)

    def set_listener(self, listener: Callable[[str, str], None] | None) -> None:
        self._listener = listener

    def _emit(self, kind: str, item: str) -> None:
        listener = self._listener
        if listener is not None:
            listener(kind, item)

    def write(self, item_id: str, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        with self._cond:
            self._queue.append((item_id, samples))
            self._written[item_id] = self._written.get(item_id, 0) + len(samples)
            self._cond.notify_all()

    def end_item(self, item_id: str) -> None:
        with self._cond:
            self._ended.add(item_id)
            self._cond.notify_all()

    def flush(self, keep_cue: bool = False) -> int:
        with self._cond:
            item = self._current
            played = self._played.get(item, 0) if item else 0
            self._queue.clear()
            self._current = None
            self.flushes.append((item, played * 1000 // RATE))
        if item is not None:
            self._emit("flushed", item)
        return played * 1000 // RATE

    def played_ms(self, item_id: str) -> int:
        with self._cond:
            return self._played.get(item_id, 0) * 1000 // RATE

    def written_ms(self, item_id: str) -> int:
        with self._cond:
            return self._written.get(item_id, 0) * 1000 // RATE

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._queue) or self._current is not None

    def _play(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if not self._queue:
                    item = self._current
                    if item is not None and item in self._ended:
                        self._current = None
                        drained = item
                    else:
                        drained = None
                        self._cond.wait(0.05)
                        continue
                else:
                    drained = None
                    item, samples = self._queue[0]
                    step, rest = samples[:self.STEP], samples[self.STEP:]
                    if len(rest):
                        self._queue[0] = (item, rest)
                    else:
                        self._queue.popleft()
                    first = item not in self._started
                    self._started.add(item)
                    self._current = item
            if drained is not None:
                self._emit("drained", drained)
                continue
            if first:
                self._emit("started", item)
            self._stop.wait(len(step) / RATE / self.speed)
            with self._cond:
                if self._current == item:
                    self._played[item] = self._played.get(item, 0) + len(step)
                    self.played_audio.append(step)


class FakeAudio:
    def __init__(self, frame_ms: int = 20, playback_speed: float = 1.0) -> None:
        self.capture = FakeCapture(frame_ms)
        self.playback = FakePlayback(playback_speed)

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        self.playback.close()


class Posted:
    """The controller's side: records posted events and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, kind: type, timeout_s: float = 10.0, count: int = 1) -> Event:
        """The `count`-th posted event of type `kind`; fails with what was posted instead."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len([e for e in self.events if isinstance(e, kind)]) >= count, timeout_s)
            if not ok:
                raise AssertionError(f"no {kind.__name__} #{count} within {timeout_s} s; "
                                     f"posted: {self.names()}")
            return [e for e in self.events if isinstance(e, kind)][count - 1]

    def names(self) -> list[str]:
        return [type(e).__name__ for e in list(self.events)]

    def of(self, kind: type) -> list[Event]:
        return [e for e in list(self.events) if isinstance(e, kind)]

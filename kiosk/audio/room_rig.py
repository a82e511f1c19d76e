"""A simulated room between the virtual speaker and the virtual microphone (test rig).

`VirtualAudio` connects the kiosk's speaker to nothing; `EchoRoom` closes the loop like a
bedside room does, through the real devices: ``parec`` records the speaker's monitor
(``spk.monitor``), a thread filters each 10 ms block with the room (`kiosk.sim.room.EchoPath`:
the configured delay, a decaying-noise impulse response with RT60 ~0.3 s, attenuation and
background noise), mixes in what the virtual patient says (`say`), and ``pacat`` plays the
result into the microphone's sink (``micfeed``). Sound played into ``micfeed`` by other means
(`VirtualAudio.play_into_mic`) is mixed by PulseAudio as before.

Latency: both sinks run on the PulseAudio server's one clock and both pipes move 24 kHz, so
nothing drifts; what the room adds beyond `RoomModel.delay_ms` is the buffering of the two
pipes and streams. The queue waiting for ``pacat`` is measured (FIONREAD on the pipe) and kept
at `queue_ms` (60 ms: enough for this thread to stall for a while on a loaded machine without
pacat running dry) by dropping or inserting whole blocks of silence when it stays off target
(after a long stall of this process); `corrections` counts that: each one is a jump of the
echo, which no real room makes. So is an underrun or overrun of the two server streams (pacat
or parec not scheduled in time on a loaded machine): they report it, and `glitches` counts it;
`jumps` is the sum. `tests/audio/test_room_rig.py` measures the end-to-end delay
the kiosk sees and its stability.

Example::

    with VirtualAudio() as rig, EchoRoom(rig, RoomModel(delay_ms=80)) as room:
        room.say(phrase)          # int16 at 24 kHz, mixed from the next block on
"""

from __future__ import annotations

import array
import fcntl
import os
import subprocess
import termios
import threading

import numpy as np

from kiosk.audio.virtual import VirtualAudio
from kiosk.sim.room import EchoPath, RoomModel

RATE_HZ = 24000
_STATS_BLOCKS = 50  # queue level judged over 0.5 s
_PATIENCE = 3  # windows in a row off target before the queue is corrected
_CATCH_UP_BLOCKS = 25  # input backlog (250 ms) that is dropped rather than worked off


class EchoRoom:
    """The acoustic path speaker -> room -> microphone of the virtual rig (module doc)."""

    def __init__(self, rig: VirtualAudio, room: RoomModel | None = None, *,
                 block_ms: int = 10, queue_ms: int = 60) -> None:
        self.rig = rig
        self.room = room or RoomModel()
        if self.room.rate_hz != RATE_HZ:
            raise ValueError("the room runs at 24 kHz")
        self.block = RATE_HZ * block_ms // 1000
        self.queue = RATE_HZ * queue_ms // 1000
        self._path = EchoPath(self.room, max_block=self.block)
        self._procs: list[subprocess.Popen] = []
        self._watchers: list[threading.Thread] = []  # one per process, reading its stderr
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._speech: list[tuple[np.ndarray, int]] = []  # (samples, next index)
        self._running = threading.Event()
        self._calm = 0  # windows in a row that needed no trim (start-up)
        self._off = 0  # windows in a row off target (settled)
        self.blocks = 0
        """Blocks the room has passed from the speaker to the microphone."""
        self.corrections = 0
        """Times the queue was brought back to `queue_ms` after `start()` returned (each
        one moves the delay by a block; 0 in a steady run)."""
        self.glitches = 0
        """Underruns and overruns of the two server streams, as pacat and parec report
        them: each one moves the echo (the server plays silence, or drops audio)."""
        self.error: BaseException | None = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> EchoRoom:
        """Start the two streams and the thread; returns once audio flows and the delay
        has settled (about a second)."""
        env = {**os.environ, **self.rig.env}
        # 20 ms: at 10 ms their server streams glitched 8 times in 6 minutes of bench/echo.py
        # on 2 cores (0 at 20 ms in two runs); the rig then adds 73-80 ms to the room's delay
        # (34-41 at 10 ms). --verbose: they say when one underruns or overruns.
        common = [f"--rate={RATE_HZ}", "--channels=1", "--format=s16le", "--raw",
                  "--latency-msec=20", "--verbose"]
        play = subprocess.Popen(["pacat", "--playback", "--device=micfeed",
                                 "--client-name=kiosk-room", *common],
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._procs.append(play)
        rec = subprocess.Popen(["parec", "--device=spk.monitor", "--client-name=kiosk-room",
                                *common], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
        self._procs.append(rec)
        for proc in (play, rec):
            watcher = threading.Thread(target=self._watch, args=(proc,),
                                       name="echo-room-watch", daemon=True)
            watcher.start()
            self._watchers.append(watcher)
        self._thread = threading.Thread(target=self._run, args=(rec, play),
                                        name="echo-room", daemon=True)
        self._thread.start()
        if not self._running.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"the echo room did not start: {self.error}")
        return self

    def stop(self) -> None:
        """Stop the thread and both processes (by their PIDs); safe to call twice."""
        self._stop.set()
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            p.wait(5)
        for watcher in self._watchers:  # they end at their process's end of stderr
            watcher.join(5)
        self._watchers.clear()
        for p in self._procs:
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    f.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._procs.clear()

    def __enter__(self) -> EchoRoom:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def jumps(self) -> int:
        """Everything that moved the echo since `start()` returned: queue corrections and
        server stream glitches (0 in a steady run; a real room makes none)."""
        return self.corrections + self.glitches

    def _watch(self, proc: subprocess.Popen) -> None:
        """Count the glitches pacat or parec report on stderr (its progress lines end in
        a carriage return, so the stream is searched, not split into lines)."""
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        tail = b""
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            data = tail + chunk
            new = _glitches(data) - _glitches(tail)
            if new:
                with self._lock:
                    self.glitches += new
            tail = data[-32:]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    # -- the patient ---------------------------------------------------------------------

    def say(self, pcm: np.ndarray) -> None:
        """Mix `pcm` (int16 or float, 24 kHz mono) into the microphone from the next block."""
        with self._lock:
            self._speech.append((np.asarray(pcm, np.float32), 0))

    @property
    def speaking(self) -> bool:
        with self._lock:
            return bool(self._speech)

    # -- the room's thread ---------------------------------------------------------------

    def _run(self, rec: subprocess.Popen, play: subprocess.Popen) -> None:
        assert rec.stdout is not None and play.stdin is not None
        src, dst = rec.stdout.fileno(), play.stdin.fileno()
        nbytes = self.block * 2
        levels: list[int] = []
        try:
            # The queue pacat plays from, with 200 ms more while parec starts: a pacat that
            # runs dry at the start re-buffers and keeps that delay hidden in the server,
            # while a surplus waits in the pipe where it is seen and trimmed below.
            os.write(dst, bytes((self.queue + RATE_HZ // 5) * 2))
            while not self._stop.is_set():
                data = _read_exact(src, nbytes)
                if data is None:
                    return
                if _queued(src) >= _CATCH_UP_BLOCKS * nbytes:  # stalled for long: catch up
                    _read_exact(src, _queued(src) // nbytes * nbytes)
                    self.corrections += 1
                out = self._mix(np.frombuffer(data, np.int16))
                os.write(dst, out)
                self.blocks += 1
                levels.append(_queued(dst) // 2)
                if len(levels) >= _STATS_BLOCKS:
                    self._regulate(min(levels), src, dst)
                    levels.clear()
        except (OSError, ValueError) as exc:
            if not self._stop.is_set():
                self.error = exc
        except BaseException as exc:  # a test must see it, not a silent rig
            self.error = exc
            raise

    def _regulate(self, low: int, src: int, dst: int) -> None:
        """Keep the queue waiting for pacat at `queue` samples.

        `low` is the lowest level over the last 0.5 s: what pacat has left just before it
        takes more. pacat takes uneven chunks, so once settled only a clear excursion (this
        thread or pacat stalled) is corrected, by whole blocks: fine trims would move the
        delay every few hundred ms. Until then the surplus of the start is trimmed to the
        sample, and `start()` returns after two windows that needed no trim.
        """
        excess = low - self.queue
        settled = self._running.is_set()
        if not settled and -self.block // 2 <= excess <= self.block // 2:
            self._calm += 1
            if self._calm >= 2:
                self.corrections = 0  # from now on each one moves the delay
                with self._lock:
                    self.glitches = 0  # pacat ran dry while parec started
                self._running.set()
            return
        self._calm = 0
        if settled:
            # A short stall of this thread (a loaded machine) dips the queue for a moment
            # and the backlog read afterwards refills it: only a level that stays off for
            # `_PATIENCE` windows is corrected (each correction is a jump of the echo).
            off = excess > 2 * self.block or excess < -2 * self.block
            self._off = self._off + 1 if off else 0
            if self._off < _PATIENCE:
                return
            self._off = 0
        if excess > (2 * self.block if settled else self.block // 2):
            drop = excess // self.block * self.block if settled else excess
            _read_exact(src, drop * 2)  # drop input: the echo comes sooner
            self.corrections += 1
        elif excess < (-2 * self.block if settled else -self.block // 2):
            os.write(dst, bytes(-excess * 2))  # pacat was running dry: refill
            self.corrections += 1

    def _mix(self, block: np.ndarray) -> bytes:
        y = self._path.process(block.astype(np.float32))
        with self._lock:
            still = []
            for pcm, pos in self._speech:
                k = min(len(y), len(pcm) - pos)
                y[:k] += pcm[pos:pos + k]
                if pos + k < len(pcm):
                    still.append((pcm, pos + k))
            self._speech = still
        return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


def _queued(fd: int) -> int:
    """Bytes waiting in the pipe `fd` belongs to (either end)."""
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


def _read_exact(fd: int, n: int) -> bytes | None:
    """Exactly `n` bytes from `fd`, or None at its end."""
    parts, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _glitches(data: bytes) -> int:
    return data.count(b"Stream underrun.") + data.count(b"Stream overrun.")

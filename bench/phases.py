"""The benchmark's measurements, one function each, on a running daemon (see process.py).

CPU windows never touch the simulator's records (reading them makes the simulator work);
what must be checked about a window is checked after it ends.
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import RATE, KioskDaemon, Reaper, end_process
from bench.procstat import ProcSample, Window, sample
from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE, VirtualAudio
from kiosk.sim import speech_like, utterance
from kiosk.sim.remote import SimulatorProcess

NAIVE = str(Path(__file__).resolve().parent / "naive.py")
WARM_S = 1.0  # after a stream starts, before its CPU window opens
# How the virtual patient's pacat feeds the microphone in the listening windows. PulseAudio
# runs the microphone's sink at a quarter of the feeder's latency: the rig's usual 20 ms make
# it 5 ms and wake every recorder ~200 times a second, a pace no microphone imposes (a
# sound server's source follows its recorders' latency, ALSA wakes a program per period it
# asked for). 200 ms leave the sink at its own 50 ms, as when nobody speaks (pactl list
# sinks: "configured 50000 usec"). The 5 ms pace is measured too, and reported.
PATIENT_LATENCY_MS = 200
RIG_LATENCY_MS = 20


@dataclass
class Ctx:
    daemon: KioskDaemon
    rig: VirtualAudio
    sim: SimulatorProcess
    reaper: Reaper
    key_file: Path
    workdir: Path
    naive_logs: dict[int, Path] = field(default_factory=dict)

    def spawn_naive(self, *args: str) -> subprocess.Popen[bytes]:
        """`python bench/naive.py ARGS` on the virtual devices, its stderr in a file."""
        log = self.workdir / f"naive-{args[0]}.log"
        with open(log, "wb") as err:
            proc = self.reaper.track(subprocess.Popen(
                [sys.executable, NAIVE, *args], env={**os.environ, **self.rig.env},
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err))
        self.naive_logs[proc.pid] = log
        return proc

    def read_line(self, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
        """A naive process's next stdout line, within `timeout_s`."""
        try:
            return read_line(proc, timeout_s)
        except RuntimeError as exc:
            log = self.naive_logs.get(proc.pid)
            tail = log.read_text(errors="replace").splitlines()[-5:] if log else []
            raise RuntimeError(f"{exc}; its stderr ends with: {tail}") from None


@dataclass
class Measured:
    """A CPU window and the audio seconds it carried."""

    window: Window
    audio_s: float

    @property
    def cpu_per_audio_s(self) -> float:
        return self.window.cpu_s / self.audio_s

    @property
    def wakeups_per_s(self) -> float:
        return self.window.switches / self.window.wall_s


def newest_index(sim: SimulatorProcess) -> int:
    conn = sim.last_connection
    return conn.index if conn is not None else -1


def new_connection(sim: SimulatorProcess, after: int, timeout_s: float = 15.0) -> Any:
    return sim.wait_for(lambda: (c := sim.last_connection) is not None and c.index > after
                        and c, timeout_s)


def sleep_until(t: float) -> None:
    """Wait for a moment that *defines* a measurement (a window's end, a stimulus)."""
    while (left := t - time.monotonic()) > 0:
        time.sleep(left)


def _window(pid: int, seconds: float) -> Window:
    start = sample(pid)
    sleep_until(start.at + seconds)
    return Window(start, sample(pid))


def idle(ctx: Ctx, seconds: float) -> Window:
    """CPU and wake-ups of the daemon while nothing happens."""
    window = _window(ctx.daemon.pid, seconds)
    ctx.daemon.check_alive()
    return window


def listening(ctx: Ctx, seconds: float, feed_latency_ms: int = PATIENT_LATENCY_MS
              ) -> Measured:
    """CPU per audio second while the patient talks without pause: the server VAD hears
    speech start and never its end, so the kiosk stays `listening` throughout."""
    d, sim = ctx.daemon, ctx.sim
    before = newest_index(sim)
    pressed = d.press()
    heard_at = d.wait_state("listening", pressed, 30)
    conn = new_connection(sim, before)
    feed = ctx.rig.play_into_mic(speech_like(seconds + WARM_S + 5.0), RATE, feed_latency_ms)
    try:
        sim.wait_for(lambda: "input_audio_buffer.speech_started" in conn.server_types(), 10)
        time.sleep(WARM_S)
        window = _window(d.pid, seconds)
        stopped = "input_audio_buffer.speech_stopped" in conn.server_types()
        states = [f["STATUS"].split()[0] for at, f in d.notify.messages
                  if heard_at < at <= window.end.at and "STATUS" in f]
        if stopped or any(s != "listening" for s in states):
            raise RuntimeError(f"the kiosk left `listening` during the window ({states}, "
                               f"speech_stopped: {stopped})")
        ended = d.press()
        d.wait_state("idle", ended)
    finally:
        feed.stop()
    return Measured(window, window.wall_s)


def read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """A child's next stdout line, within `timeout_s`."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or (proc.poll() is not None and not select.select([fd], [], [], 0)[0]):
            raise RuntimeError(f"no line from process {proc.pid} within {timeout_s} s "
                               f"(exit {proc.poll()})")
        if select.select([fd], [], [], min(left, 0.5))[0]:
            byte = os.read(fd, 1)
            if not byte:
                continue
            line += byte
    return line.decode().strip()


def _naive(ctx: Ctx, mode: str, device: str) -> subprocess.Popen[bytes]:
    proc = ctx.spawn_naive(mode, "--gateway", ctx.sim.gateway_url, "--key-file",
                           str(ctx.key_file), "--device", device)
    if (line := ctx.read_line(proc, 30)) != "ready":
        raise RuntimeError(f"naive {mode} said {line!r}")
    return proc


def naive_client(ctx: Ctx, seconds: float, feed_latency_ms: int = PATIENT_LATENCY_MS
                 ) -> Measured:
    """The naive client streaming the same talk, measured the same way."""
    before = newest_index(ctx.sim)
    proc = _naive(ctx, "client", MIC_DEVICE)
    feed = ctx.rig.play_into_mic(speech_like(seconds + WARM_S + 5.0), RATE, feed_latency_ms)
    try:
        conn = new_connection(ctx.sim, before)
        ctx.sim.wait_for(lambda: "input_audio_buffer.speech_started" in conn.server_types(),
                         10)
        time.sleep(WARM_S)
        window = _window(proc.pid, seconds)
        if proc.poll() is not None:
            raise RuntimeError(f"the naive client exited with {proc.returncode}")
    finally:
        feed.stop()
        end_process(proc)
    return Measured(window, window.wall_s)


def speaking(ctx: Ctx, seconds: float) -> Measured:
    """CPU per audio second of an answer `seconds` long, from the first sample played
    (STATUS=speaking) to the last (STATUS=listening again)."""
    d, sim = ctx.daemon, ctx.sim
    sim.knobs.answer_s = seconds
    pressed = d.press()
    d.wait_state("listening", pressed, 30)
    ctx.rig.play_into_mic(utterance(), RATE)
    started = d.wait_state("speaking", pressed, 30)
    start = sample(d.pid)
    finished = d.wait_state("listening", started, seconds + 30)
    end = sample(d.pid)
    if finished - started < 0.9 * seconds:
        raise RuntimeError(f"the answer stopped after {finished - started:.1f} s of "
                           f"{seconds} s (interrupted?)")
    ended = d.press()
    d.wait_state("idle", ended)
    return Measured(Window(start, end), seconds)


def naive_player(ctx: Ctx, seconds: float) -> Measured:
    """The naive player: the same answer from the simulator, blocking writes."""
    ctx.sim.knobs.answer_s = seconds
    proc = _naive(ctx, "player", SPEAKER_DEVICE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        if (line := ctx.read_line(proc, 30)) != "started":
            raise RuntimeError(f"naive player said {line!r}")
        start = sample(proc.pid)
        line = ctx.read_line(proc, seconds + 30)
        end = sample(proc.pid)
        if not line.startswith("done "):
            raise RuntimeError(f"naive player said {line!r}")
        played_s = int(line.split()[1]) / RATE
    finally:
        end_process(proc)
    return Measured(Window(start, end), played_s)


@dataclass
class Endurance:
    visits: int
    rss_before_kib: int
    rss_after_kib: int
    threads_before: int
    threads_after: int
    fds_before: int
    fds_after: int


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _settled_threads(pid: int, limit: int, timeout_s: float = 10.0) -> int:
    """Thread count once a visit's short-lived threads have ended (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while (n := sample(pid, threads=False).threads) > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def visits(ctx: Ctx, warmup: int, count: int, turn_every: int, rest_threads: int) -> Endurance:
    """RSS, threads and file descriptors at rest before and after `count` visits (press,
    listening, press; every `turn_every`-th also a question and its whole answer).

    "At rest" is as after start-up: once the daemon is back to `rest_threads` threads, or at
    most 10 s after `idle` (the status light's thread, started by the first visit, stays); it
    closes its streams and shuts PortAudio down about a second after `idle`. A sample taken
    at `idle` itself would still count the open streams' buffers, which the daemon gives back
    a moment later; the peak with streams open is VmHWM."""
    d = ctx.daemon

    def visit(i: int) -> None:
        pressed = d.press()
        at = d.wait_state("listening", pressed, 30)
        if turn_every and i % turn_every == 0:
            ctx.rig.play_into_mic(utterance(), RATE)
            at = d.wait_state("listening", d.wait_state("speaking", at, 30), 30)
        d.wait_state("idle", d.press())

    for i in range(warmup):
        visit(i)
    threads0 = _settled_threads(d.pid, rest_threads)
    before: ProcSample = sample(d.pid, threads=False)
    fds0 = _fds(d.pid)
    for i in range(count):
        visit(i)
    threads1 = _settled_threads(d.pid, rest_threads)
    after = sample(d.pid, threads=False)
    return Endurance(count, before.rss_kib, after.rss_kib, threads0, threads1, fds0,
                     _fds(d.pid))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")

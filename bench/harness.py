"""The benchmark's real parts: `voice-kiosk run` as systemd starts it, the service manager's
end of NOTIFY_SOCKET, timed recordings of the virtual devices, and one place that ends
every process the benchmark started (by PID, also on a failure or Ctrl-C).

Nothing here reaches into the daemon: it is driven and observed only as systemd and a
patient would (signals, STATUS=, the speaker, the microphone).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config" / "voice-kiosk.yaml"
VOICE_KIOSK = str(Path(sys.executable).with_name("voice-kiosk"))
RATE = 24000
UNIT_FILE = ROOT / "systemd" / "voice-kiosk.service"
# What the unit file gives the daemon: WatchdogSec=30 (so the watchdog thread runs).
WATCHDOG_USEC = "30000000"
# Variables that would point the daemon at another sound server or service manager.
_SCRUB = ("PULSE_SERVER", "PULSE_SINK", "PULSE_SOURCE", "NOTIFY_SOCKET", "WATCHDOG_USEC",
          "WATCHDOG_PID", "VOICE_KIOSK_CONFIG", "CREDENTIALS_DIRECTORY")


class Reaper:
    """Every child process the benchmark started, ended by PID: SIGTERM, then SIGKILL after a
    bounded wait. `stop_all()` runs from the benchmark's `finally`."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []
        self._closers: list[Callable[[], None]] = []

    def track(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        self._procs.append(proc)
        return proc

    def on_stop(self, closer: Callable[[], None]) -> None:
        """Call `closer` (e.g. a SimulatorProcess's or VirtualAudio's stop) at the end."""
        self._closers.append(closer)

    def stop_all(self) -> None:
        """End everything; the benchmark's last step. From here on Ctrl-C and SIGTERM are
        ignored: one more would cut the cleanup short (seen: `timeout` and `pkill` both
        signalling the benchmark left its PulseAudio and work files behind)."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
        for proc in reversed(self._procs):
            end_process(proc)
        self._procs.clear()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()


def end_process(proc: subprocess.Popen[Any], timeout_s: float = 5.0) -> int | None:
    """SIGTERM `proc` by PID, SIGKILL it if it is still there after `timeout_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    return proc.poll()


_held = 0  # depth of `uninterrupted` blocks
_pending: int | None = None  # a SIGTERM that came during one


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `finally` blocks clean up as for Ctrl-C."""
    def handler(signum: int, frame: object) -> None:
        global _pending
        if _held:
            _pending = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A SIGTERM waits until the block is over: raised between a child's start and its
    `Reaper.track`, it left the child running (seen once in the signal test: the daemon
    outlived the benchmark)."""
    global _held, _pending
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            signum, _pending = _pending, None
            raise KeyboardInterrupt(f"signal {signum}")


# -- configuration ------------------------------------------------------------------------------

def bench_config(gateway_url: str, key_file: Path, mic: str, speaker: str
                 ) -> tuple[dict[str, Any], list[tuple[str, Any, str]]]:
    """The example configuration with only what this machine needs changed, and the list of
    (key, value, why) that differ from it."""
    settings = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    changes: list[tuple[str, Any, str]] = [
        ("kiosk.id", "bench", "a name for the log"),
        ("gateway.url", gateway_url, "the simulator in its own process"),
        ("gateway.api_key_file", str(key_file), "the simulator's key (the example has none)"),
        ("audio.input_device", mic, "the virtual microphone (PulseAudio null sink)"),
        ("audio.output_device", speaker, "the virtual speaker (PulseAudio null sink)"),
        ("gpio.pin_factory", "mock", "this machine has no GPIO pins"),
    ]
    for key, value, _ in changes:
        section, name = key.split(".")
        settings[section][name] = value
    return settings, changes


# -- systemd's side -----------------------------------------------------------------------------

class NotifySocket:
    """The service manager's end of NOTIFY_SOCKET: every datagram with its arrival time."""

    def __init__(self) -> None:
        self.address = f"@voice-kiosk-bench-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.address[1:])
        self._sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="notify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.monotonic()
            fields = dict(line.split("=", 1) for line in data.decode().splitlines()
                          if "=" in line)
            with self._cond:
                self.messages.append((at, fields))
                self._cond.notify_all()

    def wait(self, key: str, prefix: str = "", after: float = 0.0,
             timeout_s: float = 15.0) -> tuple[float, dict[str, str]]:
        """The first message at or after `after` with key=prefix...; (arrival, fields)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for at, fields in self.messages:
                    if at >= after and fields.get(key, "\0").startswith(prefix):
                        return at, fields
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {key}={prefix}... within {timeout_s} s; states "
                                       f"so far: {self.states()[-8:]}")
                self._cond.wait(left)

    def first_status_after(self, after: float, unless: str) -> tuple[float, str] | None:
        """The first STATUS that arrived after `after` and does not start with `unless`,
        with its arrival; None when there is none yet (no wait)."""
        with self._cond:
            for at, fields in self.messages:
                status = fields.get("STATUS", "")
                if at > after and status and not status.startswith(unless):
                    return at, status
        return None

    def states(self) -> list[str]:
        with self._cond:
            return [f["STATUS"].split()[0] for _, f in self.messages if "STATUS" in f]

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self._sock.close()


def unit_environment(unit: Path = UNIT_FILE) -> dict[str, str]:
    """The Environment= assignments of the unit's [Service] section: the daemon runs with
    them, so the benchmark does too."""
    env: dict[str, str] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith("Environment="):
            for item in shlex.split(line.partition("=")[2]):
                key, sep, value = item.partition("=")
                if sep:
                    env[key] = value
    return env


def byte_compile(env: dict[str, str]) -> None:
    """Byte-compile the kiosk and its libraries for the unit's PYTHONOPTIMIZE level, as
    install.sh does, so a first run measures the installed daemon, not one compiling in
    memory (seconds the first time, then only a check of timestamps)."""
    level = env.get("PYTHONOPTIMIZE", "")
    flags = {"": [], "0": [], "1": ["-O"]}.get(level, ["-OO"])
    purelib = sysconfig.get_path("purelib")
    subprocess.run([sys.executable, *flags, "-m", "compileall", "-q", "-j", "0", purelib,
                    str(ROOT / "kiosk")], check=True, stdout=subprocess.DEVNULL)


class KioskDaemon:
    """`voice-kiosk run --config PATH` started like the unit does (its Environment=, the
watchdog), its log in a file."""

    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str],
                 reaper: Reaper) -> None:
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "kiosk.log"
        self.notify = NotifySocket()
        reaper.on_stop(self.notify.close)
        base = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        unit = unit_environment()
        byte_compile(unit)
        with open(self.log_path, "wb") as log, uninterrupted():
            self.proc = reaper.track(subprocess.Popen(
                [VOICE_KIOSK, "run", "--config", str(self.config_path)],
                env={**base, **unit, **env, "NOTIFY_SOCKET": self.notify.address,
                     "WATCHDOG_USEC": WATCHDOG_USEC},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir))
        self.pid = self.proc.pid

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        return self.notify.wait("READY", timeout_s=timeout_s)[0]

    def press(self) -> float:
        """A short button press (SIGUSR1, as `systemctl kill -s USR1`); when it was sent."""
        at = time.monotonic()
        os.kill(self.pid, signal.SIGUSR1)
        return at

    def wait_state(self, state: str, after: float, timeout_s: float = 15.0) -> float:
        """Arrival time of the first STATUS=<state> ... at or after `after`."""
        self.check_alive()
        return self.notify.wait("STATUS", state + " ", after, timeout_s)[0]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"voice-kiosk exited with {self.proc.returncode}:\n"
                               f"{self.log_tail()}")

    def log_text(self) -> str:
        """The daemon's whole log so far ("" before it wrote one)."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> int | None:
        return end_process(self.proc, 10.0)


# -- the virtual devices, timed -----------------------------------------------------------------

class TimedRecorder:
    """Records a PulseAudio source (24 kHz mono) and knows when each sample was there.

    Every chunk read from parec is stamped on arrival. Sample n of the recording was at the
    source at about ``epoch + n / RATE``, where epoch is the smallest ``arrival - samples
    received so far / RATE`` over all chunks: the least-delayed chunk's end. Buffering in
    parec (its fragments) cancels out; what remains is the smallest delivery delay (pipe
    and scheduling, about a millisecond), which makes sounds look that much later.
    """

    def __init__(self, env: dict[str, str], device: str, reaper: Reaper) -> None:
        self.device = device
        self._ended = False
        self._proc = reaper.track(subprocess.Popen(
            ["parec", f"--device={device}", f"--rate={RATE}", "--channels=1",
             "--format=s16le", "--raw", "--latency-msec=10"],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        self._data = bytearray()
        self.epoch = float("inf")
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="recorder", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 4800)
            at = time.monotonic()
            with self._cond:
                if not chunk:
                    self._ended = True
                    self._cond.notify_all()
                    return
                self._data += chunk
                self.epoch = min(self.epoch, at - (len(self._data) // 2) / RATE)
                self._cond.notify_all()

    def _wait_samples(self, n: int, timeout_s: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.recorded >= n or self._ended, timeout_s) \
                    or self.recorded < n:
                raise TimeoutError(f"the recording of the {self.device} {what}")

    def wait_ready(self, timeout_s: float = 5.0) -> None:
        """Return once audio flows (0.2 s recorded)."""
        self._wait_samples(RATE // 5, timeout_s, "delivered no audio")

    @property
    def recorded(self) -> int:
        """Samples recorded so far."""
        return len(self._data) // 2

    def samples(self) -> np.ndarray:
        """A copy of the recording so far (int16)."""
        with self._cond:
            data = bytes(self._data[:len(self._data) // 2 * 2])
        return np.frombuffer(data, dtype="<i2")

    def time_of(self, n: int | float) -> float:
        return self.epoch + n / RATE

    def index_at(self, t: float) -> int:
        return int(round((t - self.epoch) * RATE))

    def wait_until(self, t: float, timeout_s: float = 5.0) -> np.ndarray:
        """The recording once it covers the moment `t` (plus 50 ms)."""
        self._wait_samples(self.index_at(t) + RATE // 20, timeout_s,
                           "does not reach the moment asked for")
        return self.samples()

    def stop(self) -> None:
        end_process(self._proc)
        self._thread.join(5)

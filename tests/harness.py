"""Test harness: `voice-kiosk run` as a subprocess, the service manager's NOTIFY_SOCKET, a
clock the test moves by hand."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VOICE_KIOSK = str(Path(sys.executable).with_name("voice-kiosk"))
# Variables that would make the daemon find a sound server or systemd we did not set up.
_SCRUB = ("PULSE_SERVER", "PULSE_SINK", "PULSE_SOURCE", "NOTIFY_SOCKET", "WATCHDOG_USEC",
          "WATCHDOG_PID", "VOICE_KIOSK_CONFIG", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")


class DaemonProcess:
    """`voice-kiosk run --config PATH` with its stderr collected line by line.

    >>> with DaemonProcess(config, env=rig.env) as d:
    ...     d.wait_for_log(r"self-check")
    ...     d.signal(signal.SIGTERM); assert d.wait_exit(3) == 0
    """

    def __init__(self, config: str | Path, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None):
        base = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        # Where systemd's StateDirectory= would be (the spoken prompts' cache): a folder of
        # this process's own unless the test names one, never the user's home.
        self._state = tempfile.TemporaryDirectory(prefix="voice-kiosk-state-")
        base["STATE_DIRECTORY"] = self._state.name
        self.proc = subprocess.Popen(
            [VOICE_KIOSK, "run", "--config", str(config)], env={**base, **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=cwd, bufsize=1)
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._seen = 0  # wait_for_log searches lines after the last match

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)
        self._new.put(None)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout_s: float = 15.0) -> re.Match[str]:
        """The next log line (after the previous match) matching `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            for i in range(self._seen, len(self.lines)):
                m = rx.search(self.lines[i])
                if m:
                    self._seen = i + 1
                    return m
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and self._new.empty()
                             and not self._reader.is_alive()):
                raise AssertionError(f"no log line matching {pattern!r} within {timeout_s} s "
                                     f"(exit code {self.proc.poll()}); log:\n{self.log[-4000:]}")
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=min(left, 0.2))

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout_s: float) -> int:
        return self.proc.wait(timeout_s)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        self._state.cleanup()

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SystemdView:
    """The service manager's end of NOTIFY_SOCKET: every datagram, in order, with the time
    it arrived, collected by a thread so a test can wait for states one after another."""

    def __init__(self) -> None:
        import socket
        import uuid

        self.address = f"@voice-kiosk-e2e-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.address[1:])
        self._sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._cursor = 0
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(ln.split("=", 1) for ln in data.splitlines() if "=" in ln)
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def states(self) -> list[str]:
        """The first word of every STATUS= so far."""
        return [f["STATUS"].split()[0] for _, f in self.messages if "STATUS" in f]

    def wait_for(self, key: str, prefix: str = "", timeout_s: float = 15.0
                 ) -> tuple[float, dict[str, str]]:
        """The next message (after the last one waited for) with key=prefix...; returns its
        arrival time and fields."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for i in range(self._cursor, len(self.messages)):
                    at, fields = self.messages[i]
                    if key in fields and fields[key].startswith(prefix):
                        self._cursor = i + 1
                        return at, fields
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {key}={prefix}... within {timeout_s} s; "
                                         f"states so far: {self.states()}")
                self._cond.wait(left)

    def wait_state(self, state: str, timeout_s: float = 15.0) -> tuple[float, dict[str, str]]:
        return self.wait_for("STATUS", state + " ", timeout_s)

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self._sock.close()


class ManualClock:
    """A monotonic clock the test moves forward (for Retry-After and auth hold periods)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

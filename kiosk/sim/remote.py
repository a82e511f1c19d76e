"""The simulator in its own process, driven from the test process with the same API.

When the kiosk under test is a subprocess, an in-process simulator shares the test's
interpreter: its threads, its GIL and the test's pauses all leak into the timings the kiosk
sees. `SimulatorProcess` starts `python -m kiosk.sim --control SOCKET` instead and talks to it
over a UNIX socket (multiprocessing.connection, with an authentication key):

    with SimulatorProcess(answer_s=1.5) as sim:
        sim.gateway_url, sim.realtime_url, sim.api_key
        sim.knobs.gateway_status = 503            # set in the child
        sim.inject("drop")
        conn = sim.last_connection                # a copy kept current (kiosk.sim.mirror)
        sim.wait_for(lambda: conn.truncations, timeout_s=5)

`wait_for` re-evaluates its predicate in the test process each time the child reports that
its records changed (a long poll on the child's change counter), never by busy polling. The
child exits when asked, when its parent dies (its stdin closes), or on SIGTERM; `stop()`
escalates to SIGKILL, by PID, after bounded waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, fields
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from kiosk.sim.knobs import SimKnobs
from kiosk.sim.mirror import Cursor, Mirror, MirroredConnection, delta
from kiosk.sim.records import GatewayRequest, Limits, wait_until
from kiosk.sim.simulator import Simulator, TlsFiles

AUTHKEY_ENV = "KIOSK_SIM_AUTHKEY"
_KNOBS = frozenset(f.name for f in fields(SimKnobs))
_COMMANDS = ("inject", "create_api_key", "revoke_api_key", "create_user", "expire_tokens",
             "restart_gateway")
_ERRORS: dict[str, type[Exception]] = {"ValueError": ValueError, "TypeError": TypeError,
                                       "KeyError": KeyError, "AttributeError": AttributeError,
                                       "TimeoutError": TimeoutError}


# -- the child's side ----------------------------------------------------------------------------

def serve_control(sim: Simulator, path: str, authkey: bytes,
                  done: threading.Event) -> Listener:
    """Answer control connections on the UNIX socket `path` (mode 0600) in the background
    until `done` is set; returns the listener, for the caller to close."""
    listener = Listener(path, family="AF_UNIX", authkey=authkey)
    os.chmod(path, 0o600)

    def accept() -> None:
        while not done.is_set():
            try:
                conn = listener.accept()
            except OSError:
                return  # the listener was closed: shutting down
            except Exception:  # noqa: BLE001 - a peer without the key: refuse, keep serving
                continue
            threading.Thread(target=_answer, args=(sim, conn, done), daemon=True).start()

    threading.Thread(target=accept, name="sim-control", daemon=True).start()
    return listener


def _answer(sim: Simulator, conn: Connection, done: threading.Event) -> None:
    with conn:
        while not done.is_set():
            try:
                method, args, kwargs = conn.recv()
            except (EOFError, OSError):
                return
            try:
                result: Any = ("ok", _call(sim, method, args, kwargs, done))
            except Exception as exc:  # noqa: BLE001 - reported to the caller, who raises it
                result = ("err", type(exc).__name__, str(exc))
            conn.send(result)


def _call(sim: Simulator, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
          done: threading.Event) -> Any:
    if method == "info":
        return {"gateway_url": sim.gateway_url, "realtime_url": sim.realtime_url,
                "api_key": sim.api_key, "limits": asdict(sim.limits), "pid": os.getpid()}
    if method == "sync":
        since, gateway_total, cursors, wait_s = args
        sim.wait_change(since, min(float(wait_s), 5.0))
        return delta(sim, since, gateway_total, cursors)
    if method == "get_knob":
        return getattr(sim.knobs, _knob(args[0]))
    if method == "set_knob":
        setattr(sim.knobs, _knob(args[0]), args[1])
        return None
    if method == "stop":
        done.set()
        return None
    if method in _COMMANDS:
        return getattr(sim, method)(*args, **kwargs)
    raise AttributeError(f"the simulator has no remote method {method!r}")


def _knob(name: str) -> str:
    if name not in _KNOBS:
        raise AttributeError(f"SimKnobs has no knob {name!r}")
    return name


# -- the test's side ---------------------------------------------------------------------------

class RemoteKnobs:
    """`sim.knobs` of a SimulatorProcess: every read and write goes to the child."""

    def __init__(self, call: Callable[..., Any]) -> None:
        object.__setattr__(self, "_call", call)

    def __getattr__(self, name: str) -> Any:
        if name not in _KNOBS:
            raise AttributeError(f"SimKnobs has no knob {name!r}")
        return self._call("get_knob", name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _KNOBS:
            raise AttributeError(f"SimKnobs has no knob {name!r}")
        self._call("set_knob", name, value)


class _Channel:
    """One control connection, one call at a time."""

    def __init__(self, path: str, authkey: bytes) -> None:
        self._conn = Client(path, family="AF_UNIX", authkey=authkey)
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._conn.send((method, args, kwargs))
            answer = self._conn.recv()
        if answer[0] == "ok":
            return answer[1]
        raise _ERRORS.get(answer[1], RuntimeError)(f"simulator process: {answer[2]}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()


class SimulatorProcess:
    """A Simulator in a child process, with the API tests use on an in-process one.

    tls: (certificate, key) files for https:// and wss://. limits: see `records.Limits`.
    knobs: initial `SimKnobs` values, set before `start()` returns.
    """

    def __init__(self, *, tls: TlsFiles | None = None, host: str = "127.0.0.1",
                 limits: Limits | None = None, start_timeout_s: float = 30.0,
                 **knobs: Any) -> None:
        unknown = set(knobs) - _KNOBS
        if unknown:
            raise TypeError(f"unknown simulator knobs: {sorted(unknown)}")
        self._tls, self._host, self._knobs = tls, host, knobs
        self.limits = limits or Limits()
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = ""
        self._cmd: _Channel | None = None
        self._poll: _Channel | None = None
        self._mirror: Mirror | None = None
        self.gateway_url = self.realtime_url = self.api_key = ""
        self.pid = 0
        self.knobs = RemoteKnobs(self._call)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimulatorProcess:
        self._dir = tempfile.mkdtemp(prefix="kiosk-sim-")
        path, authkey = os.path.join(self._dir, "control.sock"), secrets.token_bytes(32)
        argv = [sys.executable, "-m", "kiosk.sim", "--control", path, "--host", self._host,
                "--limits", json.dumps(asdict(self.limits))]
        if self._tls is not None:
            argv += ["--tls-cert", str(self._tls[0]), "--tls-key", str(self._tls[1])]
        errors = open(os.path.join(self._dir, "stderr"), "wb")  # noqa: SIM115
        with errors:
            # stdin stays open and unused: when this process dies, the child reads EOF.
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=errors, env={**os.environ,
                                                              AUTHKEY_ENV: authkey.hex()})
        self.pid = self._proc.pid
        weakref.finalize(self, _kill, self._proc, self._dir)
        try:
            self._wait_ready()
            self._cmd, self._poll = _Channel(path, authkey), _Channel(path, authkey)
            info = self._call("info")
            for name, value in self._knobs.items():
                self._call("set_knob", name, value)
        except BaseException:
            self.stop()
            raise
        self.gateway_url, self.realtime_url = info["gateway_url"], info["realtime_url"]
        self.api_key = info["api_key"]
        self._mirror = Mirror(Limits(**info["limits"]), self._fetch)
        return self

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + self._start_timeout_s
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise RuntimeError(f"simulator process not ready (exit {proc.poll()}): "
                                   f"{self._stderr()}")
            if select.select([proc.stdout], [], [], min(left, 0.5))[0]:
                line += os.read(proc.stdout.fileno(), 4096)  # unbuffered: select stays true
        if not json.loads(line).get("ready"):
            raise RuntimeError(f"simulator process said {line!r}")

    def _stderr(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self._dir, "stderr").read_text(errors="replace")[-2000:]
        return ""

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the child to stop; SIGTERM, then SIGKILL, each after `timeout_s`."""
        if self._cmd is not None:
            with contextlib.suppress(OSError, EOFError, RuntimeError):
                self._cmd.call("stop")
        for channel in (self._cmd, self._poll):
            if channel is not None:
                channel.close()
        self._cmd = self._poll = None
        if self._proc is not None:
            _kill(self._proc, self._dir, timeout_s)

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the simulator's API -----------------------------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._cmd is None:
            raise RuntimeError("the simulator process is not running")
        return self._cmd.call(method, *args, **kwargs)

    def _fetch(self, since: int, gateway_total: int, cursors: dict[int, Cursor],
               wait_s: float) -> dict[str, Any]:
        if self._poll is None:
            raise RuntimeError("the simulator process is not running")
        return self._poll.call("sync", since, gateway_total, cursors, wait_s)

    @property
    def mirror(self) -> Mirror:
        assert self._mirror is not None, "start() the simulator process first"
        return self._mirror

    @property
    def gateway_requests(self) -> list[GatewayRequest]:
        self.mirror.refresh()
        return self.mirror.gateway_requests

    @property
    def connections(self) -> list[MirroredConnection]:
        self.mirror.refresh()
        return self.mirror.connections

    @property
    def last_connection(self) -> MirroredConnection | None:
        connections = self.connections
        return connections[-1] if connections else None

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 5.0) -> Any:
        """Wait until predicate() is truthy, re-evaluated here whenever the child's records
        change; returns its value, or raises TimeoutError."""
        mirror = self.mirror

        def evaluate() -> Any:
            with mirror.quiet():  # one consistent view, no round trip per field read
                return predicate()

        mirror.refresh()
        return wait_until(evaluate, timeout_s,
                          lambda remaining: mirror.refresh(wait_s=min(remaining, 1.0)))

    def inject(self, kind: str, **kwargs: Any) -> int:
        """See Simulator.inject."""
        return int(self._call("inject", kind, **kwargs))

    def create_api_key(self) -> str:
        return str(self._call("create_api_key"))

    def revoke_api_key(self, key: str) -> None:
        self._call("revoke_api_key", key)

    def create_user(self, email: str = "kiosk@ward.example", password: str | None = None, *,
                    requires_2fa: bool = False) -> tuple[str, str]:
        email, password = self._call("create_user", email, password, requires_2fa=requires_2fa)
        return str(email), str(password)

    def expire_tokens(self) -> None:
        self._call("expire_tokens")

    def restart_gateway(self) -> None:
        self._call("restart_gateway")


def _kill(proc: subprocess.Popen[bytes], folder: str, timeout_s: float = 5.0) -> None:
    """End the child by PID: wait for it, then SIGTERM, then SIGKILL; remove its folder."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the child's parent-death signal: it exits on EOF
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        try:
            proc.wait(timeout_s)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.stdout is not None:
        proc.stdout.close()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)

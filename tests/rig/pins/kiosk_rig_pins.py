"""Test pins for voice-kiosk: a gpiozero pin factory that behaves like lgpio's after close().

Test code, not part of the kiosk. gpiozero's own `MockFactory` keeps working after
`close()`, which is why a reload that closed gpiozero's process-wide factory and then reused
it went unnoticed: on a Pi, lgpio's factory refuses every use once closed (its chip handle is
gone). `RigFactory` is a `MockFactory` with PWM-capable pins that refuses the same way, so a
test sees what a Pi would.

gpiozero finds it by name, the way it finds its own drivers: this directory holds a
``kiosk_rig_pins-1.0.dist-info/entry_points.txt`` that registers the factory in the
``gpiozero_pin_factories`` entry-point group. Put the directory on the module path and name
the factory; gpiozero's default resolution (``Device.pin_factory`` is None, the kiosk's
``gpio.pin_factory: auto``) then builds it::

    PYTHONPATH=tests/rig/pins GPIOZERO_PIN_FACTORY=kiosk-rig voice-kiosk run ...

In-process (a unit test of "reload with `auto`")::

    monkeypatch.syspath_prepend(str(PINS_DIR))          # tests.rig.PINS_DIR
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", FACTORY_NAME)
    gpiozero.Device.pin_factory = None                  # let gpiozero resolve it
    ... build the kiosk with pin_factory auto, reload it ...
    factory = gpiozero.Device.pin_factory               # the live one, a RigFactory
    factory.pin(17).drive_low()                         # press; raises if it was closed

Out of process, set ``KIOSK_RIG_PINS_SOCKET=/path/to.sock`` and the process serves a
line-based control protocol on that UNIX socket (one request line, one answer line; answers
start with ``ok`` or ``err``). It always reports on the newest `RigFactory` of the process,
so a test sees whether the factory in use was closed or replaced:

    ping                  ok open|closed <serial>   (serial counts factories built, from 1)
    pins                  ok GPIO17:input:1 GPIO18:output:0.1 ...   (pins in use)
    get PIN               ok <function> <state>      e.g. ok output 1.0
    history PIN           ok <now> <t>=<state> ...   the last changes, monotonic seconds
    drive PIN low|high    ok                         an input pin, as a wire would (a button)

PIN is a BCM number or a gpiozero pin name (17, GPIO17, BOARD11).
"""

from __future__ import annotations

import contextlib
import os
import socketserver
import threading
import time
from collections import deque
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

FACTORY_NAME = "kiosk-rig"
"""The name to give GPIOZERO_PIN_FACTORY (see the dist-info's entry_points.txt)."""
ENV_SOCKET = "KIOSK_RIG_PINS_SOCKET"
"""Environment variable naming the control socket's path (unset: no socket)."""
HISTORY_LEN = 512
"""State changes kept per pin: bounded, since a daemon's LED blinks for as long as it runs."""


class FactoryClosedError(RuntimeError):
    """Any use of a closed factory or of its pins (lgpio raises its own error here)."""


class RigPin(MockPWMPin):
    """A PWM-capable mock pin that refuses to work once its factory is closed, and keeps a
    bounded, timestamped history of its states for the control socket."""

    def __init__(self, factory: RigFactory, info: Any) -> None:
        self.history: deque[tuple[float, float]] = deque(maxlen=HISTORY_LEN)
        super().__init__(factory, info)
        self.history.append((time.monotonic(), float(self._state)))

    def _check_open(self) -> None:
        factory = self.factory
        if factory is None or factory.closed:
            raise FactoryClosedError(
                f"{self.info.name}: the pin factory was closed; like lgpio's, its pins "
                f"cannot be used any more (build a new factory)")

    def close(self) -> None:
        # lgpio's pins: closing after the factory has gone is a no-op, not an error.
        factory = self.factory
        if factory is None or factory.closed:
            return
        super().close()

    def _change_state(self, value: Any) -> bool:
        changed = super()._change_state(value)
        if changed:
            self.history.append((time.monotonic(), float(value)))
            if len(self.states) > HISTORY_LEN:  # MockPin's own list would grow forever
                del self.states[:-HISTORY_LEN]
        return changed

    def drive_high(self) -> None:
        self._check_open()
        super().drive_high()

    def drive_low(self) -> None:
        self._check_open()
        super().drive_low()


def _guarded(name: str) -> Any:
    """A MockPWMPin accessor that first checks the factory is still open."""
    original = getattr(MockPWMPin, name)

    def accessor(self: RigPin, *args: Any) -> Any:
        self._check_open()
        return original(self, *args)

    accessor.__name__ = name
    return accessor


for _name in ("_get_function", "_set_function", "_get_state", "_set_state",
              "_get_frequency", "_set_frequency", "_get_pull", "_set_pull", "_get_bounce",
              "_set_bounce", "_get_edges", "_set_edges", "_get_when_changed",
              "_set_when_changed"):
    setattr(RigPin, _name, _guarded(_name))


class RigFactory(MockFactory):
    """gpiozero's MockFactory with `RigPin`s; after `close()` every use raises
    `FactoryClosedError`, as lgpio's factory does once its chip handle is closed."""

    _serial = 0
    _serial_lock = threading.Lock()

    def __init__(self, revision: str | None = None) -> None:
        super().__init__(revision=revision, pin_class=RigPin)
        self.closed = False
        with RigFactory._serial_lock:
            RigFactory._serial += 1
            self.serial = RigFactory._serial
        _Control.attach(self)

    def pin(self, name: Any, pin_class: Any = None, **kwargs: Any) -> RigPin:
        if self.closed:
            raise FactoryClosedError(
                f"pin {name}: the pin factory was closed; like lgpio's, it cannot open pins "
                f"any more (build a new factory)")
        return super().pin(name, pin_class=pin_class, **kwargs)

    def reserve_pins(self, requester: Any, *names: Any) -> None:
        if self.closed:
            raise FactoryClosedError("the pin factory was closed; it cannot reserve pins")
        super().reserve_pins(requester, *names)

    def close(self) -> None:
        if self.closed:
            return
        super().close()  # closes every pin while they still work, like lgpio's
        self.closed = True

    def find(self, name: str) -> RigPin:
        """The pin in use called `name` (17, GPIO17, BOARD11), for the control socket."""
        if self.closed:
            raise FactoryClosedError("the pin factory was closed")
        wanted = {info for _, info in self.board_info.find_pin(
            int(name) if name.isdigit() else name)}
        for info, pin in list(self.pins.items()):
            if info in wanted:
                return pin
        raise LookupError(f"pin {name} is not in use")


class _Control:
    """The control socket: one per process, reporting on the newest RigFactory."""

    lock = threading.Lock()
    server: socketserver.ThreadingUnixStreamServer | None = None
    path: str | None = None
    factory: RigFactory | None = None

    @classmethod
    def attach(cls, factory: RigFactory) -> None:
        """Make `factory` the one reported on; serve the socket named in the environment
        (started once per process, moved if the variable changes: tests)."""
        path = os.environ.get(ENV_SOCKET) or None
        with cls.lock:
            cls.factory = factory
            if path == cls.path:
                return
            cls._stop_locked()
            if path is None:
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # left by a previous run of the process
            cls.server = socketserver.ThreadingUnixStreamServer(path, _Handler)
            cls.server.daemon_threads = True
            cls.path = path
            threading.Thread(target=cls.server.serve_forever, name="rig-pins-control",
                             daemon=True).start()

    @classmethod
    def stop(cls) -> None:
        """Stop serving and remove the socket (tests; a daemon just exits)."""
        with cls.lock:
            cls._stop_locked()
            cls.factory = None

    @classmethod
    def _stop_locked(cls) -> None:
        if cls.server is not None:
            cls.server.shutdown()
            cls.server.server_close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cls.path or "")
        cls.server, cls.path = None, None

    @classmethod
    def answer(cls, line: str) -> str:
        words = line.split()
        if not words:
            return "err empty request"
        with cls.lock:
            factory = cls.factory
        if factory is None:
            return "err no pin factory"
        command, args = words[0], words[1:]
        try:
            if command == "ping":
                return f"ok {'closed' if factory.closed else 'open'} {factory.serial}"
            if command == "pins":
                if factory.closed:
                    raise FactoryClosedError("the pin factory was closed")
                return "ok " + " ".join(f"{info.name}:{pin.function}:{float(pin.state):g}"
                                        for info, pin in sorted(factory.pins.items(),
                                                                key=lambda kv: kv[0].name))
            if command == "get" and len(args) == 1:
                pin = factory.find(args[0])
                return f"ok {pin.function} {float(pin.state):g}"
            if command == "history" and len(args) == 1:
                pin = factory.find(args[0])
                changes = " ".join(f"{t:.4f}={s:g}" for t, s in list(pin.history))
                return f"ok {time.monotonic():.4f} {changes}"
            if command == "drive" and len(args) == 2 and args[1] in ("low", "high"):
                pin = factory.find(args[0])
                if pin.function != "input":
                    return f"err pin {args[0]} is an output; only inputs can be driven"
                (pin.drive_low if args[1] == "low" else pin.drive_high)()
                return "ok"
        except (FactoryClosedError, LookupError, ValueError) as exc:
            return f"err {exc}"
        return f"err unknown request {line.strip()!r}"


def stop_control() -> None:
    """Stop the control socket of this process, if any (for tests that start several)."""
    _Control.stop()


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for raw in self.rfile:
            self.wfile.write((_Control.answer(raw.decode(errors="replace")) + "\n").encode())
            self.wfile.flush()

"""The test pin factory (tests/rig/pins) does what the installed tier and the reload tests
rely on: gpiozero finds it by name through its entry point, it refuses every use after
close() as lgpio's factory does, and its control socket reads and drives pins."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import LED, PWMLED, Button, Device

from tests.rig import FACTORY_NAME, PINS_DIR


@pytest.fixture
def rig_pins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """gpiozero's default resolution pointed at the test factory, with a control socket;
    the process-wide default factory is reset before and after."""
    monkeypatch.syspath_prepend(str(PINS_DIR))
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", FACTORY_NAME)
    monkeypatch.setenv("KIOSK_RIG_PINS_SOCKET", str(tmp_path / "pins.sock"))
    import kiosk_rig_pins

    Device.pin_factory = None
    yield kiosk_rig_pins
    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = None
    kiosk_rig_pins.stop_control()


def ask(path: Path, request: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(request.encode() + b"\n")
        return s.makefile().readline().strip()


def test_gpiozero_resolves_it_by_name_through_the_entry_point(tmp_path: Path) -> None:
    """In a fresh interpreter, as the daemon runs it: PYTHONPATH + GPIOZERO_PIN_FACTORY,
    and nothing else, make gpiozero's own default factory a RigFactory."""
    code = ("from gpiozero import Device\n"
            "Device.ensure_pin_factory()\n"
            "print(type(Device.pin_factory).__module__, type(Device.pin_factory).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path,
                            env={"PYTHONPATH": str(PINS_DIR),
                                 "GPIOZERO_PIN_FACTORY": FACTORY_NAME, "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["kiosk_rig_pins", "RigFactory"]


def test_pins_are_pwm_capable_mock_pins(rig_pins: Any) -> None:
    Device.ensure_pin_factory()
    factory = Device.pin_factory
    assert isinstance(factory, rig_pins.RigFactory)
    led = PWMLED(18)
    led.value = 0.25
    assert factory.pin(18).state == pytest.approx(0.25)
    led.close()


def test_after_close_every_use_raises_like_lgpio(rig_pins: Any) -> None:
    Device.ensure_pin_factory()
    factory = Device.pin_factory
    led = LED(18)
    button = Button(17)
    pin = factory.pin(17)
    factory.close()
    for use in (lambda: factory.pin(17), lambda: led.on(), lambda: button.is_pressed,
                lambda: pin.drive_low(), lambda: LED(23)):
        with pytest.raises(rig_pins.FactoryClosedError):
            use()
    led.close()  # closing devices afterwards is quiet, as with lgpio
    button.close()


def test_mock_factory_would_not_have_raised(rig_pins: Any) -> None:
    """Why this factory exists: gpiozero's own MockFactory keeps working after close()."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    mock = MockFactory(pin_class=MockPWMPin)
    mock.close()
    led = LED(18, pin_factory=mock)
    led.on()
    assert mock.pin(18).state
    led.close()


def test_control_socket_reads_and_drives_pins(rig_pins: Any, tmp_path: Path) -> None:
    sock = tmp_path / "pins.sock"
    Device.ensure_pin_factory()
    led = LED(18)
    button = Button(17, bounce_time=None)
    presses: list[float] = []
    button.when_pressed = lambda: presses.append(time.monotonic())
    assert ask(sock, "ping").startswith("ok open ")
    led.on()
    assert ask(sock, "get 18") == "ok output 1"
    assert ask(sock, "get GPIO17") == "ok input 1"  # pulled up, not pressed
    assert ask(sock, "drive 17 low") == "ok"
    assert presses
    assert ask(sock, "drive 17 high") == "ok"
    assert ask(sock, "drive 18 low").startswith("err ")  # an output cannot be driven
    assert ask(sock, "get 4").startswith("err ")  # not in use
    assert ask(sock, "nonsense").startswith("err ")
    led.off()
    history = ask(sock, "history 18").split()
    assert history[0] == "ok" and [c.split("=")[1] for c in history[2:]][-2:] == ["1", "0"]
    assert "GPIO17:input:1" in ask(sock, "pins")
    Device.pin_factory.close()
    assert ask(sock, "ping").startswith("ok closed ")
    assert ask(sock, "get 18").startswith("err ")
    led.close()
    button.close()


def test_socket_reports_the_newest_factory(rig_pins: Any, tmp_path: Path) -> None:
    """A daemon that replaces a closed factory (the fix for reload) is seen replacing it."""
    sock = tmp_path / "pins.sock"
    Device.ensure_pin_factory()
    first = ask(sock, "ping").split()
    Device.pin_factory.close()
    Device.pin_factory = None
    Device.ensure_pin_factory()
    second = ask(sock, "ping").split()
    assert second[:2] == ["ok", "open"] and int(second[2]) == int(first[2]) + 1

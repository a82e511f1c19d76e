"""Fixtures for the systemd-facing parts: a real notification socket, clean logging, a
staged root for systemd-analyze, and the repository paths."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk.service.logs import TRANSCRIPT_LOGGER, teardown_logging

REPO = Path(__file__).resolve().parents[2]
UNIT_FILE = REPO / "systemd" / "voice-kiosk.service"
INSTALL_SH = REPO / "systemd" / "install.sh"
VENV = REPO / ".venv"


class NotifyListener:
    """The service manager's end of NOTIFY_SOCKET: a bound AF_UNIX datagram socket."""

    def __init__(self, address: str) -> None:
        self.address = address  # "@name" (abstract) as systemd puts it in NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:])

    def receive(self, timeout_s: float = 5.0) -> str | None:
        """The next datagram, or None if nothing arrives within timeout_s."""
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(65536).decode()
        except TimeoutError:
            return None

    def receive_fields(self, timeout_s: float = 5.0) -> dict[str, str]:
        data = self.receive(timeout_s)
        assert data is not None, f"no notification within {timeout_s} s"
        return dict(line.split("=", 1) for line in data.splitlines() if line)

    def wait_for(self, key: str, timeout_s: float = 10.0, value_prefix: str = "",
                 alive: Callable[[], bool] | None = None) -> tuple[dict[str, str], list[str]]:
        """Read until a datagram has key (and value starting with value_prefix); returns it
        and every datagram seen so far. Gives up early once `alive()` turns False."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            data = self.receive(min(left, 0.25))
            if data is None:
                if alive is not None and not alive():
                    break
                continue
            seen.append(data)
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            if key in fields and fields[key].startswith(value_prefix):
                return fields, seen
        raise AssertionError(f"no {key}={value_prefix}... within {timeout_s} s; got {seen}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    listener = NotifyListener(f"@voice-kiosk-test-{uuid.uuid4().hex}")
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    yield listener
    listener.close()


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Leave the root logger as the next test (in any directory) expects it."""
    root = logging.getLogger()
    level = root.level
    transcripts = logging.getLogger(TRANSCRIPT_LOGGER)
    disabled = transcripts.disabled
    yield
    teardown_logging()
    root.setLevel(level)
    transcripts.disabled = disabled


def require_systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: install the Debian package 'systemd' "
                    "(systemd/bootstrap.sh does this from systemd/packages-dev.txt)")
    return path


@pytest.fixture
def staged_root(tmp_path: Path) -> Path:
    """A directory systemd-analyze --root can verify the unit in: the unit, a stand-in
    ExecStart binary, /bin/kill and the host's system units (for default dependencies)."""
    require_systemd_analyze()
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT_FILE, root / "etc/systemd/system/voice-kiosk.service")
    exe = root / "opt/voice-kiosk/venv/bin/voice-kiosk"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    add_host_system_units(root)
    return root


def add_host_system_units(root: Path) -> None:
    """What `verify --root` needs besides our unit: /bin/kill (ExecReload) and the
    targets our unit depends on by default (sysinit.target...)."""
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy(shutil.which("kill") or "/bin/kill", root / "bin/kill")
    for units in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if os.path.isdir(units):
            shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True,
                            dirs_exist_ok=True)
            return
    pytest.fail("no /usr/lib/systemd/system here: install the Debian package 'systemd'")

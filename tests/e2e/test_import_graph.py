"""The daemon's import graph, read from the running process (`-X importtime`): the simulator
and the virtual sound rig are demo and test tools, loaded only when they are asked for."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.harness import DaemonProcess, SystemdView

pytestmark = pytest.mark.e2e

TOOLS = ("kiosk.sim", "kiosk.audio.virtual", "kiosk.demo")
CONFIG = """\
kiosk:
  id: bed-3
gateway:
  url: {url}
  {credential}
audio:
  input_device: no-such-microphone
  output_device: no-such-speaker
gpio:
  pin_factory: mock
logging:
  target: stderr
"""


def imported_modules(tmp_path: Path, url: str, credential: str) -> set[str]:
    """Every module `voice-kiosk run` imported from start to READY to exit."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(url=url, credential=credential))
    systemd = SystemdView()
    try:
        with DaemonProcess(config, env={**systemd.env, "PYTHONPROFILEIMPORTTIME": "1"},
                           cwd=tmp_path) as daemon:
            systemd.wait_for("READY", "1", timeout_s=30)
            daemon.signal(signal.SIGTERM)
            assert daemon.wait_exit(10) == 0
    finally:
        systemd.close()
    found = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", daemon.log, re.M)
    assert found, "no -X importtime output: the check would prove nothing"
    return set(found)


def test_a_kiosk_with_a_gateway_never_loads_the_simulator_or_the_rig(tmp_path: Path):
    key = tmp_path / "api-key"
    key.write_text("va_k_not_a_real_key\n")
    key.chmod(0o600)
    modules = imported_modules(tmp_path, "http://127.0.0.1:9", f"api_key_file: {key}")
    assert "kiosk.controller" in modules and "kiosk.daemon" in modules
    leaked = sorted(m for m in modules if m.startswith(TOOLS))
    assert not leaked, f"the daemon imported demo/test tools: {leaked}"


def test_the_simulator_is_loaded_when_asked_for(tmp_path: Path):
    modules = imported_modules(tmp_path, "simulator", "")
    assert "kiosk.sim.simulator" in modules
    assert not [m for m in modules if m.startswith(("kiosk.audio.virtual", "kiosk.demo"))]

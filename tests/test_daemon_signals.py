"""The daemon as systemd drives it, before any gateway or sound device is reachable:
it stays up in `error`, rejects a broken reload, accepts a good one and stops on SIGTERM.

The configured devices do not exist on any machine, so the outcome does not depend on whether
this one has a sound server running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.harness import DaemonProcess

pytestmark = pytest.mark.e2e

CONFIG = """\
kiosk:
  id: bed-7
gateway:
  url: http://127.0.0.1:9
  api_key_file: {key}
audio:
  input_device: no-such-microphone
  output_device: no-such-speaker
gpio:
  pin_factory: mock
logging:
  target: stderr
  level: info
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    key = tmp_path / "api-key"
    key.write_text("va_k_secretsecretsecret\n")
    key.chmod(0o600)
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(key=key))
    return path


def test_broken_reload_keeps_running_then_sigterm_exits_0_within_3_s(config: Path):
    good = config.read_text()
    with DaemonProcess(config) as d:
        # The microphone is missing: the kiosk stays up and shows why.
        d.wait_for_log(r"state error \(was idle\): .*input device 'no-such-microphone'")
        d.wait_for_log(r"self-check: FAIL +gateway: 127.0.0.1:9 unreachable")

        config.write_text(good.replace("level: info", "level: loud").replace(
            "pin_factory: mock", "pin_factry: mock"))
        d.signal(signal.SIGHUP)
        d.wait_for_log(r"reload rejected: .*config.yaml:10: gpio.pin_factry: unknown key. "
                       r"Did you mean `gpio.pin_factory`\?")
        d.wait_for_log(r"reload rejected: .*config.yaml:13: logging.level: `loud` is not one")
        d.wait_for_log(r"still running on the previous configuration")
        assert d.alive()

        config.write_text(good.replace("id: bed-7", "id: bed-8"))
        d.signal(signal.SIGHUP)
        d.wait_for_log(r"configuration reloaded")
        assert d.alive()

        started = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait_exit(3) == 0
        assert time.monotonic() - started < 3
        assert "Traceback" not in d.log
        assert "secretsecret" not in d.log


def test_sigint_also_stops_cleanly(config: Path):
    with DaemonProcess(config) as d:
        d.wait_for_log(r"self-check")
        d.signal(signal.SIGINT)
        assert d.wait_exit(3) == 0


def test_invalid_config_at_start_exits_with_ex_config_and_every_error(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("audio:\n  frame_ms: 1\ngpio:\n  pin_factory: magic\n")
    with DaemonProcess(bad) as d:
        assert d.wait_exit(10) == 78
        assert f"{bad}:2: audio.frame_ms" in d.log and f"{bad}:4: gpio.pin_factory" in d.log
        assert "Traceback" not in d.log

"""`voice-kiosk run` as systemd runs it: a real process, a real NOTIFY_SOCKET, signals.

Start-up to READY=1 with the self-check in STATUS, watchdog pings, a button press (SIGUSR1)
through connecting to listening, a reload (SIGHUP) with RELOADING=1/MONOTONIC_USEC then
READY=1, and a clean stop (SIGTERM) with STOPPING=1 and exit code 0. Audio comes from the
project's own PulseAudio rig, the assistant from the built-in simulator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE, VirtualAudio
from tests.service.conftest import VENV, NotifyListener

pytestmark = [pytest.mark.e2e, pytest.mark.audio, pytest.mark.slow]

STATES = {"idle", "connecting", "listening", "thinking", "speaking", "error"}
CONFIG = """\
kiosk:
  id: e2e-bed
gateway:
  url: simulator
audio:
  input_device: {mic}
  output_device: {speaker}
gpio:
  pin_factory: mock
logging:
  target: stderr
metrics:
  textfile: {metrics}
  interval_s: 1
"""


@pytest.fixture(scope="module")
def rig() -> Iterator[VirtualAudio]:
    with VirtualAudio() as rig:
        yield rig


@pytest.fixture
def daemon(tmp_path: Path, rig: VirtualAudio,
           notify_socket: NotifyListener) -> Iterator[subprocess.Popen]:
    config = tmp_path / "config.yaml"
    # The loader currently insists that metrics.textfile exists (kind="path").
    (tmp_path / "voice-kiosk.prom").touch()
    config.write_text(CONFIG.format(mic=MIC_DEVICE, speaker=SPEAKER_DEVICE,
                                    metrics=tmp_path / "voice-kiosk.prom"))
    env = {**os.environ, **rig.env, "NOTIFY_SOCKET": notify_socket.address,
           "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    with open(tmp_path / "daemon.log", "w") as log:
        proc = subprocess.Popen([str(VENV / "bin/voice-kiosk"), "run", "--config", str(config)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


class Systemd:
    """What systemd sees of the daemon: its notifications, and its log on failure."""

    def __init__(self, proc: subprocess.Popen, listener: NotifyListener, log: Path) -> None:
        self.proc, self.listener, self.log = proc, listener, log

    def expect(self, key: str, timeout_s: float, value_prefix: str = ""
               ) -> tuple[dict[str, str], list[str]]:
        try:
            return self.listener.wait_for(key, timeout_s, value_prefix,
                                          alive=lambda: self.proc.poll() is None)
        except AssertionError as exc:
            tail = self.log.read_text()[-3000:]
            raise AssertionError(f"{exc}\nexit code: {self.proc.poll()}\n"
                                 f"daemon log (end):\n{tail}") from None


def metric(path: Path, name: str) -> float | None:
    if not path.exists():
        return None
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def status_word(fields: dict[str, str]) -> str:
    return fields["STATUS"].split()[0]


def test_systemd_sees_start_press_reload_and_stop(daemon: subprocess.Popen,
                                                  notify_socket: NotifyListener,
                                                  tmp_path: Path):
    systemd = Systemd(daemon, notify_socket, tmp_path / "daemon.log")
    ready, _ = systemd.expect("READY", timeout_s=30)
    assert status_word(ready) in STATES and "self-check" in ready["STATUS"], ready
    assert "e2e-bed" in ready["STATUS"]
    systemd.expect("WATCHDOG", timeout_s=5)

    daemon.send_signal(signal.SIGUSR1)  # a button press
    _, seen = systemd.expect("STATUS", timeout_s=20, value_prefix="listening")
    words = [status_word(dict(line.split("=", 1) for line in d.splitlines()))
             for d in seen if d.startswith("STATUS=")]
    assert "connecting" in words, seen
    prom = tmp_path / "voice-kiosk.prom"
    deadline = time.monotonic() + 10
    while metric(prom, "voice_kiosk_visits_total") != 1:  # rewritten every second
        assert time.monotonic() < deadline, "metrics file never counted the visit"
        time.sleep(0.1)
    assert metric(prom, "voice_kiosk_button_presses_total") == 1
    assert metric(prom, "voice_kiosk_press_to_listening_last_seconds") >= 0

    daemon.send_signal(signal.SIGHUP)
    reloading, _ = systemd.expect("RELOADING", timeout_s=10)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    reloaded, _ = systemd.expect("READY", timeout_s=30)
    assert "reloaded" in reloaded["STATUS"]

    daemon.send_signal(signal.SIGTERM)
    stopping, _ = systemd.expect("STOPPING", timeout_s=10)
    assert status_word(stopping) == "stopping"
    assert daemon.wait(15) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "state listening (was connecting)" in log

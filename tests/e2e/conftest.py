"""End-to-end fixtures: the real daemon process, the simulator, virtual sound devices and a
NOTIFY_SOCKET, wired together the way a hospital kiosk is."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE, VirtualAudio
from kiosk.sim.remote import SimulatorProcess
from tests.harness import DaemonProcess, SystemdView

pytestmark = [pytest.mark.e2e, pytest.mark.audio]


@pytest.fixture(scope="session")
def rig() -> Iterator[VirtualAudio]:
    with VirtualAudio() as rig:
        yield rig


@pytest.fixture
def sim() -> Iterator[SimulatorProcess]:
    """The simulator in its own process, like the kiosk: neither shares the test's
    interpreter, threads or pauses with the other."""
    with SimulatorProcess() as sim:
        yield sim


class KioskUnderTest:
    """The daemon as systemd and a patient see it: signals, STATUS=, the log, the audio."""

    def __init__(self, proc: DaemonProcess, systemd: SystemdView, rig: VirtualAudio,
                 sim: SimulatorProcess, config: Path, settings: dict[str, Any]):
        self.proc, self.systemd, self.rig, self.sim = proc, systemd, rig, sim
        self.config, self.settings = config, settings

    def press(self) -> None:
        """A short button press, the way IT staff do it remotely (SIGUSR1)."""
        self.proc.signal(signal.SIGUSR1)

    def wait_state(self, state: str, timeout_s: float = 15.0) -> float:
        """Arrival time of the next STATUS= announcing `state`."""
        return self.systemd.wait_state(state, timeout_s)[0]

    def say(self, pcm: np.ndarray, timeout_s: float = 15.0) -> None:
        """Play int16 24 kHz audio into the kiosk's microphone and wait until it is played."""
        assert self.rig.play_into_mic(pcm, 24000).wait(timeout_s)

    @property
    def pid(self) -> int:
        return self.proc.proc.pid


@pytest.fixture
def start_kiosk(tmp_path: Path, rig: VirtualAudio, sim: SimulatorProcess
                ) -> Iterator[Callable[..., KioskUnderTest]]:
    started: list[tuple[DaemonProcess, SystemdView]] = []

    def start(env: dict[str, str] | None = None, **sections: dict[str, Any]) -> KioskUnderTest:
        key = tmp_path / "gateway-api-key"
        key.write_text(sim.api_key + "\n")
        key.chmod(0o600)
        settings: dict[str, Any] = {
            "kiosk": {"id": "e2e-bed-1", "location": "test ward"},
            "gateway": {"url": sim.gateway_url, "api_key_file": str(key),
                        "retry_initial_s": 0.2, "retry_max_s": 1.0},
            "audio": {"input_device": MIC_DEVICE, "output_device": SPEAKER_DEVICE,
                      "device_retry_s": 0.5},
            "gpio": {"pin_factory": "mock"},
            "visit": {"error_display_s": 1.0},
            "logging": {"target": "stderr", "level": "info"},
        }
        for name, values in sections.items():
            settings.setdefault(name, {}).update(values)
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(settings))
        systemd = SystemdView()
        # STATE_DIRECTORY as systemd sets it: the spoken prompts' cache stays in the test's
        # folder, never in the user's home.
        proc = DaemonProcess(config, env={**rig.env, **systemd.env, "WATCHDOG_USEC": "1000000",
                                          "STATE_DIRECTORY": str(tmp_path / "state"),
                                          **(env or {})}, cwd=tmp_path)
        started.append((proc, systemd))
        kiosk = KioskUnderTest(proc, systemd, rig, sim, config, settings)
        systemd.wait_for("READY", timeout_s=30)
        return kiosk

    yield start
    for proc, systemd in started:
        if proc.alive():
            proc.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):  # close() kills it
                proc.wait_exit(5)
        proc.close()
        systemd.close()
        assert "Traceback" not in proc.log, proc.log[-4000:]

"""systemd's side of the daemon: reload, stop mid-answer, the watchdog, and what the log
must never contain."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE
from tests.e2e.signals import utterance
from tests.harness import SystemdView

pytestmark = [pytest.mark.e2e, pytest.mark.audio]


def test_sighup_applies_a_good_file_and_rejects_a_bad_one(start_kiosk, sim):
    kiosk = start_kiosk()
    text = kiosk.config.read_text()
    kiosk.config.write_text(text.replace("e2e-bed-1", "e2e-bed-2"))
    kiosk.proc.signal(signal.SIGHUP)
    kiosk.systemd.wait_for("RELOADING", "1")
    _, ready = kiosk.systemd.wait_for("READY", "1")
    assert "(e2e-bed-2)" in ready["STATUS"] and "reloaded" in ready["STATUS"]

    kiosk.config.write_text(text.replace("frame_ms", "frame_ms").replace(
        "pin_factory: mock", "pin_factory: mock\n  led_kind: laser"))
    kiosk.proc.signal(signal.SIGHUP)
    kiosk.systemd.wait_for("RELOADING", "1")
    _, ready = kiosk.systemd.wait_for("READY", "1")
    assert "reload rejected" in ready["STATUS"]
    kiosk.proc.wait_for_log(r"reload rejected: .*gpio.led_kind: `laser` is not one of")
    # Still the good configuration, still answering.
    kiosk.press()
    _, listening = kiosk.systemd.wait_state("listening")
    assert "(e2e-bed-2)" in listening["STATUS"]
    kiosk.say(utterance())
    kiosk.wait_state("speaking")


def test_sigterm_mid_answer_stops_within_3_s(start_kiosk, sim):
    kiosk = start_kiosk()
    sim.knobs.answer_s = 10.0
    sim.knobs.stream_speed = 1.0
    kiosk.press()
    kiosk.wait_state("listening")
    kiosk.say(utterance())
    kiosk.wait_state("speaking")
    started = time.monotonic()
    kiosk.proc.signal(signal.SIGTERM)
    _, stopping = kiosk.systemd.wait_for("STOPPING", "1", timeout_s=3)
    assert stopping["STATUS"].startswith("stopping ")
    assert kiosk.proc.wait_exit(3) == 0
    assert time.monotonic() - started < 3.0


def _turn_with_login(start_kiosk, sim, tmp_path: Path, transcripts: bool):
    email, password = sim.create_user("ward3@hospital.example", "correct horse battery")
    pw_file = tmp_path / "gateway-password"
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    kiosk = start_kiosk(gateway={"api_key_file": None, "email": email,
                                 "password_file": str(pw_file)},
                        logging={"transcripts": transcripts, "level": "debug"})
    for _ in range(2):
        kiosk.press()
        kiosk.wait_state("listening")
        kiosk.say(utterance())
        kiosk.wait_state("speaking")
        kiosk.wait_state("listening")
        kiosk.press()
        kiosk.wait_state("idle")
        sim.expire_tokens()  # the next session must refresh (token rotation) or log in again
    kiosk.proc.signal(signal.SIGTERM)
    assert kiosk.proc.wait_exit(5) == 0
    secrets = {password, sim.api_key}
    for req in sim.gateway_requests:
        auth = req.headers.get("authorization", "")
        if auth:
            secrets.add(auth.split()[-1])
        if isinstance(req.body, dict):
            secrets.update(v for k, v in req.body.items() if "token" in k and v)
    secrets.update(c.token for c in sim.connections if c.token)
    assert any(r.path == "/api/auth/refresh" for r in sim.gateway_requests) or any(
        r.path == "/api/auth/login" for r in sim.gateway_requests[1:])
    return kiosk.proc.log, {s for s in secrets if s and len(s) > 8}


def test_no_secrets_or_transcripts_in_the_log(start_kiosk, sim, tmp_path):
    log, secrets = _turn_with_login(start_kiosk, sim, tmp_path, transcripts=False)
    assert len(secrets) >= 4  # password, api key, access tokens, ephemeral tokens
    for secret in secrets:
        assert secret not in log
    assert sim.knobs.answer_text not in log
    assert sim.knobs.user_transcript not in log
    assert "speaking" in log  # the log did record the session


def test_transcripts_only_when_asked_and_still_no_secrets(start_kiosk, sim, tmp_path):
    log, secrets = _turn_with_login(start_kiosk, sim, tmp_path, transcripts=True)
    for secret in secrets:
        assert secret not in log
    assert sim.knobs.answer_text in log or sim.knobs.answer_text.split(".")[0] in log


HANGING_DAEMON = """
import sys, threading
import kiosk.controller as c
real = c.Controller._press
def hang(self, event):
    threading.Event().wait()  # the controller thread never returns: a hung loop
c.Controller._press = hang
from kiosk.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""


def test_a_hung_controller_loop_stops_the_watchdog_pings(tmp_path, rig, sim):
    key = tmp_path / "key"
    key.write_text(sim.api_key)
    key.chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(f"gateway: {{url: '{sim.gateway_url}', api_key_file: '{key}'}}\n"
                      f"audio: {{input_device: {MIC_DEVICE}, output_device: {SPEAKER_DEVICE}}}\n"
                      "gpio: {pin_factory: mock}\nlogging: {target: stderr}\n")
    systemd = SystemdView()
    proc = subprocess.Popen([sys.executable, "-c", HANGING_DAEMON, str(config)],
                            env={**rig.env, **systemd.env, "WATCHDOG_USEC": "400000",
                                 "PATH": "/usr/bin:/bin",
                                 "STATE_DIRECTORY": str(tmp_path / "state")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        systemd.wait_for("READY", "1", timeout_s=30)
        for _ in range(3):  # healthy: a ping about every 0.2 s
            systemd.wait_for("WATCHDOG", "1", timeout_s=2)
        proc.send_signal(signal.SIGUSR1)  # the press that hangs the loop
        with pytest.raises(AssertionError):  # pings stop once the heartbeat is 2 s stale
            for _ in range(40):
                systemd.wait_for("WATCHDOG", "1", timeout_s=1.0)
        # ... and stay stopped: systemd (WatchdogSec=0.4 s) would restart the service now.
        with pytest.raises(AssertionError):
            systemd.wait_for("WATCHDOG", "1", timeout_s=2.0)
        assert proc.poll() is None  # the process itself is still there, just hung
    finally:
        proc.kill()
        proc.wait(10)
        systemd.close()


def test_watchdog_pings_at_half_the_interval_while_healthy(start_kiosk):
    kiosk = start_kiosk()  # WATCHDOG_USEC=1000000: a ping every 0.5 s
    times = [kiosk.systemd.wait_for("WATCHDOG", "1", timeout_s=3)[0] for _ in range(6)]
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    median = gaps[len(gaps) // 2]
    assert 0.3 < median < 0.7, gaps  # generous: a shared, loaded machine

"""`voice-kiosk devices` and `voice-kiosk test-audio` as IT staff run them at the bedside."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE
from tests.e2e.signals import tone
from tests.harness import VOICE_KIOSK

pytestmark = [pytest.mark.e2e, pytest.mark.audio]


def run(args: list[str], rig, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VOICE_KIOSK, *args], env={**os.environ, **rig.env},
                          capture_output=True, text=True, timeout=60, **kw)


def test_devices_lists_the_microphone_and_speaker_by_name(rig):
    out = run(["devices"], rig)
    assert out.returncode == 0, out.stderr
    assert MIC_DEVICE in out.stdout and SPEAKER_DEVICE in out.stdout
    assert "ALSA" not in out.stderr  # PortAudio's probing noise is hidden


def _config(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"audio: {{input_device: {MIC_DEVICE}, output_device: {SPEAKER_DEVICE}}}\n")
    return str(path)


def test_test_audio_hears_a_voice_at_a_usable_level(rig, tmp_path):
    proc = subprocess.Popen([VOICE_KIOSK, "test-audio", "--config", _config(tmp_path),
                             "--seconds", "2"], env={**os.environ, **rig.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        feed = None
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            feed = rig.play_into_mic(tone(300, 0.5, amplitude=0.2), 24000)
            feed.wait(5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "dBFS" in out and "OK" in out


def test_test_audio_says_silence_when_the_microphone_hears_nothing(rig, tmp_path):
    out = run(["test-audio", "--config", _config(tmp_path), "--seconds", "1"], rig)
    assert out.returncode == 1
    assert "silence" in out.stdout.lower()


def test_test_audio_checks_the_echo_canceller_on_a_bedside_with_echo(rig, tmp_path):
    """With the speaker's echo coming back into the microphone (the echo rig, as loud as a
    patient speaks), test-audio plays its test speech and reports the canceller converged,
    how much it removed and the echo's delay."""
    from kiosk.audio.room_rig import EchoRoom
    from kiosk.sim.room import RoomModel

    config = tmp_path / "aec.yaml"
    config.write_text(f"audio: {{input_device: {MIC_DEVICE}, output_device: {SPEAKER_DEVICE}, "
                      f"echo_mode: aec}}\n")
    with EchoRoom(rig, RoomModel(delay_ms=60.0, echo_gain_db=0.0, noise_dbfs=-65.0)) as room:
        proc = subprocess.Popen([VOICE_KIOSK, "test-audio", "--config", str(config),
                                 "--seconds", "2"], env={**os.environ, **rig.env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("recording"):  # the voice check: someone speaks
                    room.say(tone(300, 2.5, amplitude=0.2))
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert room.error is None
    out = "".join(lines)
    assert proc.returncode == 0, out + (proc.stderr.read() if proc.stderr else "")
    m = re.search(r"echo: mode aec, canceller (\w+), echo reduced by ([\d.]+) dB, "
                  r"echo delay (\d+) ms", out)
    assert m, out
    assert m.group(1) == "active" and float(m.group(2)) >= 25.0, out
    # Behind the reference as time-stamped with the latencies PortAudio reports: about the
    # room's 60 ms (the rig adds some, the reported latencies take some away).
    assert 0 < int(m.group(3)) <= 300, out
    assert "OK: the echo canceller converged" in out


def test_test_audio_says_which_echo_mode_runs_when_it_is_not_aec(rig, tmp_path):
    out = run(["test-audio", "--config", _config(tmp_path), "--seconds", "1"], rig)  # gate
    assert "echo: mode gate: no canceller to check" in out.stdout, out.stdout

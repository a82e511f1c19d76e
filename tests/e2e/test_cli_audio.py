"""`voice-kiosk devices` and `voice-kiosk test-audio` as IT staff run them at the bedside."""

from __future__ import annotations

import os
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

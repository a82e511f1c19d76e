"""The README's first command: `voice-kiosk demo` shows a whole conversation turn on a
machine with no sound card, and leaves nothing running behind."""

from __future__ import annotations

import os
import re
import subprocess
import wave

import pytest

from tests.harness import VOICE_KIOSK

pytestmark = [pytest.mark.e2e, pytest.mark.audio]


def processes_using(path: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", path], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


def test_scripted_demo_shows_a_complete_turn_and_cleans_up(tmp_path):
    scratch = tmp_path / "tmp"  # the demo's private sound server lives under TMPDIR
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE")}
    env["TMPDIR"] = str(scratch)
    out = subprocess.run([VOICE_KIOSK, "demo", "--script", "--virtual-audio"], cwd=tmp_path,
                         env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    timeline = re.findall(r"^ +\d+ ms  (\w+)", out.stdout, re.M)  # the printed timeline
    assert timeline == ["connecting", "listening", "thinking", "speaking", "listening", "idle"]
    assert "a complete conversation turn" in out.stdout
    with wave.open(str(tmp_path / "kiosk-demo-answer.wav")) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 24000
    assert processes_using(str(scratch)) == []  # its private sound server is gone again
    assert list(scratch.iterdir()) == []  # and so are its files
    assert "Traceback" not in out.stderr

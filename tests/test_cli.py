"""The command line as IT staff use it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk import __version__

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "voice-kiosk.yaml"


def kiosk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})})


def test_check_config_on_the_example_exits_0_and_prints_it():
    out = kiosk("check-config", "--config", str(EXAMPLE))
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout and "frame_ms: 100" in out.stdout


def test_check_config_with_three_mistakes_lists_all_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kiosk:\n  id: ward3\naudio:\n  frame_ms: 500\n  echo_mode: cancel\n"
                   "gpio:\n  buton_pin: 17\n")
    out = kiosk("check-config", "--config", str(bad))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = [ln.strip() for ln in out.stderr.splitlines() if ln.startswith("  ")]
    assert lines == [
        f"{bad}:4: audio.frame_ms: 500 is out of range; use 10 to 100. "
        "(Microphone block and send chunk length, ms. Each one wakes the kiosk: 100 costs "
        "a fifth of the CPU of 20 and delays what the service hears by at most that long.)",
        f"{bad}:5: audio.echo_mode: `cancel` is not one of aec, gate, none.",
        f"{bad}:7: gpio.buton_pin: unknown key. Did you mean `gpio.button_pin`?",
    ]


def test_config_path_from_the_environment(tmp_path):
    bad = tmp_path / "env.yaml"
    bad.write_text("logging: {level: chatty}\n")
    out = kiosk("check-config", env={"VOICE_KIOSK_CONFIG": str(bad)})
    assert out.returncode == 1 and f"{bad}:1: logging.level" in out.stderr


def test_version_and_help_everywhere():
    assert kiosk("--version").stdout.strip() == f"voice-kiosk {__version__}"
    for cmd in ([], ["run"], ["check-config"], ["devices"], ["test-audio"], ["demo"]):
        out = kiosk(*cmd, "--help")
        assert out.returncode == 0 and "usage: voice-kiosk" in out.stdout, cmd


@pytest.mark.parametrize("argv", [["frobnicate"], []])
def test_usage_errors_exit_2_without_traceback(argv):
    out = kiosk(*argv)
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("voice-kiosk")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and __version__ in out.stdout

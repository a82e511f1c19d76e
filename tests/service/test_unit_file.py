"""The real unit file, checked by systemd's own tools: verify (no output at all) and the
offline security score."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.service.conftest import UNIT_FILE, require_systemd_analyze

MAX_EXPOSURE = 2.5


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_systemd_analyze(), *args], capture_output=True, text=True,
                          timeout=60)


def verify(root: Path) -> str:
    result = analyze("verify", f"--root={root}", "voice-kiosk.service")
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else
                                                      f"\n(exit {result.returncode})")


def test_verify_is_silent(staged_root: Path):
    assert verify(staged_root) == ""


def test_verify_would_catch_a_mistake(staged_root: Path):
    # Guards the test above: systemd-analyze only warns on typos, and we must see that.
    unit = staged_root / "etc/systemd/system/voice-kiosk.service"
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHom=1"))
    assert "ProtectHom" in verify(staged_root)


def test_security_exposure_is_low(staged_root: Path):
    result = analyze("security", "--offline=yes", f"--root={staged_root}",
                     "--no-pager", "voice-kiosk.service")
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for voice-kiosk\.service: ([\d.]+)",
                      result.stdout)
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_contract_with_the_daemon():
    d = directives(UNIT_FILE.read_text())
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["ExecStart"] == [
        "/opt/voice-kiosk/venv/bin/voice-kiosk run --config /etc/voice-kiosk/config.yaml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["User"] == ["voice-kiosk"] and d["SupplementaryGroups"] == ["audio gpio"]
    assert d["RestartPreventExitStatus"] == ["78"]  # kiosk.daemon's EXIT_CONFIG
    assert "WatchdogSec" in d and d["Restart"] == ["on-failure"]
    assert {"network-online.target", "time-sync.target"} <= set(d["After"][0].split())
    assert d["Wants"] == ["network-online.target"]  # time-sync.target is passive
    # Sound and GPIO devices only; AF_UNIX for sd_notify and the journal.
    assert d["DevicePolicy"] == ["closed"]
    assert sorted(d["DeviceAllow"]) == ["/dev/gpiomem rw", "char-alsa rw", "char-gpiochip rw"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert d["ReadWritePaths"] == ["-/var/lib/prometheus/node-exporter"]
    assert d["UMask"] == ["0022"]  # node_exporter, another user, reads the metrics file
    assert "PrivateDevices" not in d and "PrivateUsers" not in d  # would hide /dev/snd

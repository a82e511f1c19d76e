"""install.sh, really run into a temporary root: idempotent, keeps config and keys, sets
modes, uninstalls cleanly; and once with a real virtualenv."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.service.conftest import (
    INSTALL_SH,
    REPO,
    VENV,
    add_host_system_units,
    require_systemd_analyze,
)

UNIT = "etc/systemd/system/voice-kiosk.service"
WANTS = "etc/systemd/system/multi-user.target.wants/voice-kiosk.service"
DROPIN = "etc/systemd/system/voice-kiosk.service.d/credentials.conf"
CONFIG = "etc/voice-kiosk/config.yaml"
KEY = "etc/voice-kiosk/gateway-api-key"
AS_ROOT = os.geteuid() == 0


def install(root: Path, *args: str, source: Path = REPO,
            timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", str(INSTALL_SH), "--root", str(root), "--source",
                             str(source), *args], capture_output=True, text=True,
                            timeout=timeout_s)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def listing(root: Path) -> list[tuple]:
    """Every path with its type, mode, owner and content hash (or link target)."""
    rows = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            what = "-> " + os.readlink(path)
        elif path.is_file():
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = "dir"
        rows.append((str(path.relative_to(root)), oct(st.st_mode), st.st_uid, st.st_gid, what))
    return rows


def group_id(root: Path, name: str) -> int:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"no group {name} in {root}/etc/group")


def test_twice_gives_the_same_tree(tmp_path: Path):
    install(tmp_path, "--no-venv")
    first = listing(tmp_path)
    install(tmp_path, "--no-venv")
    assert listing(tmp_path) == first
    assert (tmp_path / UNIT).read_bytes() == (REPO / "systemd/voice-kiosk.service").read_bytes()
    assert os.readlink(tmp_path / WANTS) == "/etc/systemd/system/voice-kiosk.service"


def test_user_and_modes(tmp_path: Path):
    install(tmp_path, "--no-venv")
    gid = group_id(tmp_path, "voice-kiosk")
    passwd = (tmp_path / "etc/passwd").read_text()
    assert "voice-kiosk:" in passwd and "nologin" in passwd
    members = {line.split(":")[0]: line.split(":")[3]
               for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert "voice-kiosk" in members["audio"] and "voice-kiosk" in members["gpio"]
    config = (tmp_path / CONFIG).stat()
    etc = (tmp_path / "etc/voice-kiosk").stat()
    assert oct(config.st_mode & 0o777) == "0o640" and oct(etc.st_mode & 0o777) == "0o750"
    if AS_ROOT:  # an ordinary user staging an image cannot give files away
        assert (config.st_uid, config.st_gid, etc.st_gid) == (0, gid, gid)


def test_edited_config_is_kept_and_keys_are_locked_down(tmp_path: Path):
    result = install(tmp_path, "--no-venv")
    assert "no key file yet" in result.stdout
    config = tmp_path / CONFIG
    config.write_text("kiosk:\n  id: ward3-bed12\n")
    key = tmp_path / KEY
    key.write_text("va_k_not_a_real_key")
    key.chmod(0o644)

    result = install(tmp_path, "--no-venv")
    assert config.read_text() == "kiosk:\n  id: ward3-bed12\n"
    assert key.read_text() == "va_k_not_a_real_key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert key.stat().st_uid == 0 or not AS_ROOT
    assert "LoadCredential=gateway-api-key:/etc/voice-kiosk/gateway-api-key" in \
        (tmp_path / DROPIN).read_text()
    assert "va_k_not_a_real_key" not in result.stdout + result.stderr


def test_uninstall_removes_what_it_installed_and_keeps_config(tmp_path: Path):
    install(tmp_path, "--no-venv")
    (tmp_path / KEY).write_text("va_k_not_a_real_key")
    install(tmp_path, "--no-venv")
    fake_venv = tmp_path / "opt/voice-kiosk/venv/bin"
    fake_venv.mkdir(parents=True)

    install(tmp_path, "--uninstall")
    for gone in (UNIT, WANTS, DROPIN, "etc/sysusers.d/voice-kiosk.conf", "opt/voice-kiosk"):
        assert not (tmp_path / gone).exists() and not (tmp_path / gone).is_symlink(), gone
    assert (tmp_path / CONFIG).is_file() and (tmp_path / KEY).is_file()
    install(tmp_path, "--uninstall")  # again: nothing left to do, still fine


def test_unknown_option_is_an_error(tmp_path: Path):
    result = subprocess.run(["bash", str(INSTALL_SH), "--root", str(tmp_path), "--bogus"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "unknown option --bogus" in result.stderr


def snapshot(dest: Path) -> Path:
    """A still copy of the checkout (others may be editing it while pip builds)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                    ".*_cache", ".hypothesis", "out")
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


@pytest.mark.slow
def test_really_installs_the_package_into_a_virtualenv(tmp_path: Path):
    root = tmp_path / "root"
    source = snapshot(tmp_path / "src")
    install(root, "--venv-from", str(VENV), source=source, timeout_s=300)
    venv = root / "opt/voice-kiosk/venv"
    entry = venv / "bin/voice-kiosk"
    # The script names the interpreter the installed system will have.
    assert entry.read_text().splitlines()[0] == "#!/opt/voice-kiosk/venv/bin/python"
    # cwd outside the checkout: `python -c` would import ./kiosk from the working directory.
    result = subprocess.run([str(venv / "bin/python"), str(entry), "--version"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert __import__("kiosk").__version__ in result.stdout + result.stderr
    site = subprocess.run([str(venv / "bin/python"), "-c",
                           "import kiosk.service.notify as m; print(m.__file__)"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path).stdout
    assert site.startswith(str(venv))  # the installed copy, not the checkout
    first = listing(root)
    install(root, "--venv-from", str(VENV), source=source, timeout_s=300)
    assert listing(root) == first

    # The installed tree is what the unit expects: systemd-analyze finds ExecStart there.
    add_host_system_units(root)
    verify = subprocess.run([require_systemd_analyze(), "verify", f"--root={root}",
                             "voice-kiosk.service"], capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def test_reads_the_runtime_package_list(tmp_path: Path):
    # The bootstrap installed every package of packages-runtime.txt, so nothing to do here;
    # this runs the real dpkg query over the real list.
    result = install(tmp_path, "--packages", "--no-venv")
    assert "system packages already installed" in result.stdout

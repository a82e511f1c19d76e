"""install.sh, really run into a temporary root: idempotent, keeps config and keys, sets
modes, uninstalls cleanly; once as an ordinary user; and once with a real virtualenv built
the way install.sh builds it (no test extras, nothing borrowed from the development venv)."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
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


def install(root: Path, *args: str, source: Path = REPO, timeout_s: float = 60,
            user: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run install.sh into `root`; as `user` (an ordinary account) when given."""
    as_user = []
    if user:
        account = pwd.getpwnam(user)
        as_user = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                   "--clear-groups"]
    result = subprocess.run([*as_user, "bash", str(INSTALL_SH), "--root", str(root), "--source",
                             str(source), *args], capture_output=True, text=True,
                            timeout=timeout_s, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def read_own(path: Path, st: os.stat_result) -> bytes:
    """A staged file's bytes. systemd-sysusers writes etc/shadow and etc/gshadow with mode
    0000, which only root can read: an ordinary user who staged them lends itself u+r."""
    if os.access(path, os.R_OK) or st.st_uid != os.getuid():
        return path.read_bytes()
    path.chmod(st.st_mode | 0o400)
    try:
        return path.read_bytes()
    finally:
        path.chmod(st.st_mode)


def listing(root: Path) -> list[tuple]:
    """Every path with its type, mode, owner and content hash (or link target)."""
    rows = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            what = "-> " + os.readlink(path)
        elif path.suffix == ".pyc":
            what = "bytecode"  # stamped with its source's mtime: new on every pip install
        elif path.is_file():
            what = hashlib.sha256(read_own(path, st)).hexdigest()
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


def test_the_command_is_on_the_path(tmp_path: Path):
    install(tmp_path, "--no-venv")
    link = tmp_path / "usr/local/bin/voice-kiosk"
    assert os.readlink(link) == "/opt/voice-kiosk/venv/bin/voice-kiosk"
    install(tmp_path, "--uninstall")
    assert not link.is_symlink()


def test_textfile_directory_is_prepared_for_the_service(tmp_path: Path):
    install(tmp_path, "--no-venv")
    folder = tmp_path / "var/lib/prometheus/node-exporter"
    assert folder.is_dir()
    uid = next(line.split(":")[2] for line in (tmp_path / "etc/passwd").read_text().splitlines()
               if line.startswith("voice-kiosk:"))
    acl = subprocess.run(["getfacl", "--numeric", "--omit-header", str(folder)],
                         capture_output=True, text=True, timeout=10).stdout
    assert f"user:{uid}:rwx" in acl  # the service can write there from its first start


def test_an_ordinary_user_can_stage_an_image_twice():
    # As root, stage as `nobody`; pytest's tmp_path lives in root's private directory, so in
    # a folder of nobody's. As an ordinary user, that user is the one staging.
    user = "nobody" if AS_ROOT else None
    with tempfile.TemporaryDirectory(prefix="kiosk-stage-") as folder:
        stage = Path(folder)
        if user:
            shutil.chown(stage, user)
        install(stage / "root", "--no-venv", user=user)
        first = listing(stage / "root")
        install(stage / "root", "--no-venv", user=user)  # sysusers reads shadow back
        assert listing(stage / "root") == first
        assert "voice-kiosk:" in (stage / "root/etc/passwd").read_text()


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
                                    ".*_cache", ".hypothesis", "out", ".lgd-nfy*")
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


# Imports every module of the installed package, and reports test tools it can see.
IMPORT_ALL = """
import importlib, importlib.util, pkgutil, kiosk
names = sorted(m.name for m in pkgutil.walk_packages(kiosk.__path__, "kiosk.")
               if not m.name.endswith(".__main__"))  # those run a program when imported
for name in names:
    importlib.import_module(name)
print("imported", len(names), "from", kiosk.__file__)
print("visible test tools:", [t for t in ("pytest", "openai", "prometheus_client", "hypothesis")
                              if importlib.util.find_spec(t)])
import lgpio  # the GPIO driver for every Pi model
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_installed_artifact_imports_every_module(tmp_path: Path):
    root = tmp_path / "root"
    source = snapshot(tmp_path / "src")
    # As install.sh runs on a Pi: Debian's python3, the package without extras, dependencies
    # from the package index -- nothing from the development venv (not even on PATH).
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not p.startswith(str(VENV)))
    install(root, "--python", "/usr/bin/python3", source=source, timeout_s=840, env=env)
    venv = root / "opt/voice-kiosk/venv"
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    check = subprocess.run([str(venv / "bin/python"), "-c", IMPORT_ALL], capture_output=True,
                           text=True, timeout=120, cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"from {venv}" in check.stdout  # the installed copy, not the checkout
    assert "visible test tools: []" in check.stdout
    entry = venv / "bin/voice-kiosk"
    # The script names the interpreter the installed system will have.
    assert entry.read_text().splitlines()[0] == "#!/opt/voice-kiosk/venv/bin/python"
    # cwd outside the checkout: `python -c` would import ./kiosk from the working directory.
    result = subprocess.run([str(venv / "bin/python"), str(entry), "--version"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert __import__("kiosk").__version__ in result.stdout + result.stderr
    example = subprocess.run([str(venv / "bin/python"), str(entry), "check-config", "--config",
                              str(source / "config/voice-kiosk.yaml")], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path, env=env)
    assert example.returncode == 0, example.stderr
    assert "note: gateway.url is empty" in example.stderr
    first = listing(root)
    install(root, "--python", "/usr/bin/python3", source=source, timeout_s=600, env=env)
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

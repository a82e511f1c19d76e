"""install.sh, the Debian package and the unit agree on paths, the account and permissions,
because all take them from systemd/layout.env: checked on what each really produces (a staged
install.sh tree, the built .deb), not on their sources."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.installed.debs import LAYOUT_ENV, Build, layout
from tests.installed.rig import REPO

pytestmark = pytest.mark.installed

L = layout()
UNIT = REPO / "systemd/voice-kiosk.service"
BUILD_ONLY = {"python3-venv", "python3-dev", "gcc", "pkg-config", "portaudio19-dev",
              "libsystemd-dev"}


def deb_files(deb: Path, *names: str) -> dict[str, str]:
    """Files from a .deb's data archive, by their path in the package."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          timeout=120, check=True).stdout
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for name in names:
            info = tar.getmember(f".{name}")
            if info.issym():
                out[name] = f"-> {info.linkname}"
                continue
            member = tar.extractfile(info)
            assert member is not None, name
            out[name] = member.read().decode()
    return out


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()


def package_list(name: str) -> list[str]:
    lines = (REPO / "systemd" / name).read_text().splitlines()
    return [p for line in lines if (p := line.split("#", 1)[0].strip())]


def test_layout_env_reads_the_same_in_bash_and_make() -> None:
    """Every line is NAME=value without spaces, quotes or trailing comments (make would keep
    the blanks before one), and bash sources the same values."""
    for line in LAYOUT_ENV.read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"KIOSK_[A-Z_]+=[^\s\"'#$]+", line), line
    names = " ".join(L)
    shell = subprocess.run(["bash", "-c", f'source "$1"; for n in {names}; do '
                            f'printf "%s=%s\\n" "$n" "${{!n}}"; done', "bash", str(LAYOUT_ENV)],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert dict(line.split("=", 1) for line in shell.splitlines()) == L


def test_unit_uses_the_layout() -> None:
    """The unit both install routes ship runs the layout's command as its account."""
    unit = UNIT.read_text()

    def value(key: str) -> str:
        match = re.search(rf"(?m)^{key}=(.*)$", unit)
        assert match, key
        return match.group(1)

    assert value("ExecStart").startswith(f"{L['KIOSK_VENV']}/bin/{L['KIOSK_NAME']} run "
                                         f"--config {L['KIOSK_CONFIG']}")
    assert (value("User"), value("Group")) == (L["KIOSK_USER"], L["KIOSK_GROUP"])
    assert value("SupplementaryGroups").split() == L["KIOSK_GROUPS"].split(",")
    assert f"/var/lib/{value('StateDirectory')}" == L["KIOSK_HOME"] == value("WorkingDirectory")
    assert value("ReadWritePaths") == f"-{L['KIOSK_TEXTFILE_DIR']}"


@pytest.mark.timeout(1800)  # may build the packages first
def test_install_sh_and_the_package_declare_the_same_account_and_modes(
        tmp_path: Path, debs: tuple[Build, Build]) -> None:
    """install.sh's sysusers.d entry (staged with --root) is the package's, and the
    package's tmpfiles.d sets the modes install.sh sets (layout.env's)."""
    subprocess.run(["bash", str(REPO / "systemd/install.sh"), "--root", str(tmp_path),
                    "--no-venv", "--no-packages"], capture_output=True, text=True, timeout=120,
                   check=True)
    staged = (tmp_path / "etc/sysusers.d/voice-kiosk.conf").read_text()
    shipped = deb_files(debs[0].deb, "/usr/lib/sysusers.d/voice-kiosk.conf",
                        "/usr/lib/tmpfiles.d/voice-kiosk.conf", "/usr/bin/voice-kiosk")
    assert shipped["/usr/lib/sysusers.d/voice-kiosk.conf"] == staged
    tmpfiles = shipped["/usr/lib/tmpfiles.d/voice-kiosk.conf"]
    assert f"d {L['KIOSK_ETC']} {L['KIOSK_ETC_MODE']} root {L['KIOSK_GROUP']} -" in tmpfiles
    assert f"z {L['KIOSK_CONFIG']} {L['KIOSK_CONFIG_MODE']} root {L['KIOSK_GROUP']} -" \
        in tmpfiles
    for secret in L["KIOSK_SECRETS"].split(","):
        assert f"z {L['KIOSK_ETC']}/{secret} {L['KIOSK_SECRET_MODE']} root root -" in tmpfiles
    assert f"a+ {L['KIOSK_TEXTFILE_DIR']} - - - - u:{L['KIOSK_USER']}:rwx" in tmpfiles
    # What install.sh made with the same values.
    etc = (tmp_path / L["KIOSK_ETC"].lstrip("/")).stat()
    config = (tmp_path / L["KIOSK_CONFIG"].lstrip("/")).stat()
    assert (oct(etc.st_mode & 0o777), oct(config.st_mode & 0o777)) == \
        (oct(int(L["KIOSK_ETC_MODE"], 8)), oct(int(L["KIOSK_CONFIG_MODE"], 8)))
    # The same command: install.sh links it in /usr/local/bin, the package in /usr/bin.
    command = f"{L['KIOSK_VENV']}/bin/{L['KIOSK_NAME']}"
    assert str((tmp_path / "usr/local/bin/voice-kiosk").readlink()) == command
    assert shipped["/usr/bin/voice-kiosk"] == f"-> {command}"


@pytest.mark.timeout(1800)
def test_depends_and_build_depends_match_the_package_lists(debs: tuple[Build, Build]) -> None:
    """The package depends on packages-runtime.txt less what only building needs, and the
    README's test command (packages-dev.txt) installs every build dependency."""
    depends = {re.split(r"[\s(:]", d.strip())[0]
               for d in deb_field(debs[0].deb, "Depends").split(",")}
    runtime = set(package_list("packages-runtime.txt"))
    assert runtime - BUILD_ONLY <= depends, runtime - BUILD_ONLY - depends
    assert {"libportaudio2", "libsystemd0", "python3.11"} <= depends, depends
    control = (REPO / "packaging/debian/control").read_text()
    field = re.search(r"(?ms)^Build-Depends:(.*?)^\S", control)
    assert field
    build = {re.split(r"[\s(]", d.strip())[0] for d in field.group(1).split(",")
             if d.strip() and not d.strip().startswith("#")}
    # Provided by debhelper (virtual names), or by python3 itself.
    provided = {"debhelper-compat", "dh-sequence-installsysusers", "python3"}
    installed = set(package_list("packages-dev.txt")) | runtime
    assert build - provided <= installed, build - provided - installed

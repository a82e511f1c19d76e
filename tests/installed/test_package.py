"""The Debian package as IT staff use it, under a real systemd: apt installs it with what it
depends on, the service starts and passes its self-check, an upgrade to a newer build keeps
the ward's edits, remove stops it and purge retires the kiosk. And what the package is made
of: lintian's verdict, its bill of materials against its virtual environment.

One container for the module, in the order a kiosk lives through. The packages are built on
this machine by the README's command (packaging/build-deb.sh), cached by their sources.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.installed.debs import Build, layout
from tests.installed.kiosk_service import (
    KIOSK_ID,
    SERVICE,
    STATES,
    UNIT,
    VENV_PYTHON,
    Service,
    install_key,
    setup_rig_audio,
    setup_rig_pins,
    start_gateway,
    wait_until,
    when,
)
from tests.installed.rig import REPO, Container, Result

pytestmark = pytest.mark.installed

L = layout()
DEB_DIR = "/var/tmp/voice-kiosk-debs"
BUILD_TIMEOUT_S = 1800  # the first test builds both packages when their sources changed
TEXTFILE = f"{L['KIOSK_TEXTFILE_DIR']}/voice-kiosk.prom"
SBOM = "/usr/share/doc/voice-kiosk/sbom.cdx.json"
# What the package installs (dpkg -L), looked for again after the purge.
PACKAGE_PATHS = (L["KIOSK_PREFIX"], L["KIOSK_ETC"], "/usr/bin/voice-kiosk",
                 "/lib/systemd/system/voice-kiosk.service", "/usr/lib/sysusers.d/voice-kiosk.conf",
                 "/usr/lib/tmpfiles.d/voice-kiosk.conf", "/usr/share/doc/voice-kiosk")
# Lists the installed distributions of the interpreter it runs in, with their requirements.
LIST_DISTS = """
import json, importlib.metadata as md
print(json.dumps([{"name": d.metadata["Name"], "version": d.version,
                   "requires": d.requires or []} for d in md.distributions()]))
"""


def apt_get(box: Container, *args: str, timeout: float = 600) -> Result:
    """apt-get as IT staff run it (non-interactive, so a conffile question would fail)."""
    return box.run(["apt-get", "-y", *args], env={"DEBIAN_FRONTEND": "noninteractive"},
                   cwd=DEB_DIR, timeout=timeout)


def status(box: Container) -> str:
    """dpkg's status and version of voice-kiosk ("" when dpkg does not know it)."""
    return box.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}",
                    "voice-kiosk"]).stdout.strip()


def stat(box: Container, path: str) -> str:
    """Mode, owner and group as `stat` shows them, e.g. "640 root voice-kiosk"."""
    return box.run(["stat", "-c", "%a %U %G", path], check=True).stdout.strip()


def wait_selfcheck(service: Service, timeout_s: float = 30) -> list[str]:
    """This start's self-check lines (the service must be active)."""
    service.wait_active()
    return wait_until(lambda: service.selfcheck(), timeout_s, "the self-check lines")


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def debs_inside(box: Container, debs: tuple[Build, Build]) -> tuple[str, str]:
    """Both packages copied into the container, as IT staff copy them to a kiosk."""
    paths = []
    for build in debs:
        path = f"{DEB_DIR}/{build.deb.name}"
        box.write(path, build.deb.read_bytes())
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def package(box: Container, debs_inside: tuple[str, str]) -> Result:
    """The test rig's sound server and pins, then the README's `sudo apt install ./...deb`."""
    setup_rig_audio(box)
    setup_rig_pins(box)
    result = apt_get(box, "install", f"./{Path(debs_inside[0]).name}")
    if result.returncode != 0:
        pytest.fail(f"apt-get install exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-3000:]}", pytrace=False)
    return result


@pytest.fixture(scope="module")
def gateway(box: Container, service: Service, package: Result) -> dict[str, str]:
    """The README's steps for a package install: the key in a root-only file, the
    LoadCredential= drop-in, gateway.url and api_key_file in config.yaml (and the metrics
    file switched on), restart. The gateway is the simulator on the container's loopback."""
    info = start_gateway(box, python=VENV_PYTHON)
    install_key(box, info["api_key"])
    box.write(L["KIOSK_CREDENTIALS_DROPIN"],
              "[Service]\nLoadCredential=gateway-api-key:/etc/voice-kiosk/gateway-api-key\n")
    box.run(["systemctl", "daemon-reload"], check=True)
    service.edit_config(kiosk={"id": KIOSK_ID, "location": "ward 3, bed 12"},
                        gateway={"url": info["gateway_url"],
                                 "api_key_file": "${CREDENTIALS_DIRECTORY}/gateway-api-key"},
                        metrics={"textfile": TEXTFILE, "interval_s": 1.0})
    service.restart().check()
    service.wait_active()
    return info


# -- the build -----------------------------------------------------------------------------------


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_lintian_reports_no_errors(debs: tuple[Build, Build]) -> None:
    """build-deb.sh fails on a lintian error; its report has none, and no warning either
    (the accepted tags are overridden, each with its reason, in the package)."""
    report = debs[0].lintian.read_text()
    tags = [line for line in report.splitlines() if re.match(r"^[EW]: ", line)]
    assert not tags, "\n".join(tags[:40])
    # Every accepted tag comes under a comment that gives the reason.
    reason = False
    overrides = REPO / "packaging/debian/voice-kiosk.lintian-overrides"
    for line in overrides.read_text().splitlines():
        if not line.strip():
            reason = False
        elif line.startswith("#"):
            reason = True
        else:
            assert reason, f"{overrides.name}: no reason given for {line!r}"


# -- IT staff install, configure, upgrade, remove -----------------------------------------------


def test_package_refuses_to_install_over_install_sh(box: Container,
                                                    debs_inside: tuple[str, str]) -> None:
    """A kiosk installed by systemd/install.sh (its /usr/local/bin link) gets a clear
    refusal, not two owners of /opt/voice-kiosk/venv; nothing of the package stays."""
    link = "/usr/local/bin/voice-kiosk"
    box.run(["ln", "-s", f"{L['KIOSK_VENV']}/bin/voice-kiosk", link], check=True)
    try:
        result = apt_get(box, "install", f"./{Path(debs_inside[0]).name}")
        assert result.returncode != 0, result.stdout[-2000:]
        output = result.stdout + result.stderr  # dpkg's (the preinst's) goes to apt's stdout
        assert "install.sh --uninstall" in output, output[-2000:]
        assert not status(box).startswith("ii"), status(box)
        assert not box.exists(L["KIOSK_VENV"])
    finally:
        box.run(["rm", "-f", link], check=True)


@pytest.mark.timeout(900)
def test_apt_install_resolves_depends_and_starts_the_service(
        package: Result, box: Container, service: Service, debs: tuple[Build, Build]) -> None:
    """`apt install ./voice-kiosk_<version>_<arch>.deb`: its Depends come from the archive,
    the unit is enabled and active with a state word, and the account, modes, conffile,
    command, metrics directory and byte-compiled modules are as systemd/layout.env says."""
    assert status(box) == f"ii  {debs[0].version}", status(box)
    for dependency in ("libportaudio2", "libsystemd0", "acl", "alsa-utils",
                       "libasound2-plugins", "espeak-ng", "python3.11"):
        assert box.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", dependency]
                       ).stdout.startswith("ii"), dependency
    assert box.run(["systemctl", "is-enabled", UNIT]).stdout.strip() == "enabled"
    service.wait_active()
    assert service.state_word() in STATES, service.status_text()
    # The unit is the repository's, where packages put units.
    unit = box.read("/lib/systemd/system/voice-kiosk.service")
    assert unit == (REPO / "systemd/voice-kiosk.service").read_text()
    # The account of sysusers.d, in the groups that open the sound and GPIO devices.
    ident = box.run(["id", "-nG", L["KIOSK_USER"]], check=True).stdout.split()
    assert set(L["KIOSK_GROUPS"].split(",")) <= set(ident), ident
    account = box.run(["getent", "passwd", L["KIOSK_USER"]], check=True).stdout.strip()
    assert account.endswith(f":{L['KIOSK_HOME']}:/usr/sbin/nologin"), account
    # Modes and owners (tmpfiles.d gives the group once the account exists).
    assert stat(box, L["KIOSK_ETC"]) == f"{int(L['KIOSK_ETC_MODE'], 8):o} root voice-kiosk"
    assert stat(box, L["KIOSK_CONFIG"]) == \
        f"{int(L['KIOSK_CONFIG_MODE'], 8):o} root voice-kiosk"
    conffiles = box.run(["dpkg-query", "-W", "-f=${Conffiles}", "voice-kiosk"],
                        check=True).stdout
    assert L["KIOSK_CONFIG"] in conffiles, conffiles
    assert box.read(L["KIOSK_CONFIG"]) == (REPO / "config/voice-kiosk.yaml").read_text()
    # The command on everyone's PATH.
    command = box.run(["bash", "-lc", "command -v voice-kiosk && voice-kiosk --version"],
                      user="pi")
    assert command.returncode == 0, command.stderr
    assert command.stdout.splitlines()[0] == "/usr/bin/voice-kiosk", command.stdout
    # The metrics directory: the service's account may write there.
    acl = box.run(["getfacl", "-p", "--omit-header", L["KIOSK_TEXTFILE_DIR"]],
                  check=True).stdout
    assert "user:voice-kiosk:rwx" in acl and "mask::rwx" in acl, acl
    probe = f"{L['KIOSK_TEXTFILE_DIR']}/.probe"
    box.run(["setpriv", "--reuid=voice-kiosk", "--regid=voice-kiosk", "--init-groups",
             "touch", probe], check=True)
    box.run(["rm", probe], check=True)
    # Byte-compiled at install (py3compile, and postinst for the unit's PYTHONOPTIMIZE=2),
    # so nothing dpkg owns is a cache file and no start compiles in memory.
    compiled = box.run(["find", L["KIOSK_VENV"], "-name", "*.pyc"], check=True).stdout.split()
    assert any("/kiosk/__pycache__/" in path for path in compiled), compiled[:5]
    assert any(path.endswith("/kiosk/__pycache__/daemon.cpython-311.opt-2.pyc")
               for path in compiled), compiled[:5]
    owned = box.run(["dpkg", "-L", "voice-kiosk"], check=True).stdout
    assert ".pyc" not in owned and "__pycache__" not in owned


@pytest.mark.timeout(240)
def test_service_passes_its_self_check(gateway: dict[str, str], box: Container,
                                       service: Service) -> None:
    """With a gateway and its key configured the README's way: every self-check line says
    ok, STATUS says so, a press is answered, the metrics file appears, and the spoken
    prompts are made by espeak-ng (a Depends) under the unit's sandbox and cached in the
    state directory."""
    lines = wait_selfcheck(service)
    checks = {re.match(r"self-check: (ok|FAIL)\s+(\w+):", line).group(2): line  # type: ignore[union-attr]
              for line in lines}
    assert set(checks) >= {"devices", "gpio", "gateway", "clock"}, lines
    assert all(line.startswith("self-check: ok") for line in lines), lines
    assert service.status_text().endswith("self-check ok"), service.status_text()
    after = service.cursor()
    service.press()
    service.wait_state("listening", after, timeout_s=20)  # the gateway accepted the key
    service.press()
    wait_until(lambda: when(s := service.states(after), s[-1:] == ["idle"]), 20,
               "the kiosk to be idle again", interval_s=0.2)
    wait_until(lambda: box.exists(TEXTFILE), 15, f"{TEXTFILE} to appear")
    assert f'kiosk="{KIOSK_ID}"' in box.read(TEXTFILE)
    ready = service.wait_message(r"^spoken prompts ready: ", "", timeout_s=30).message
    assert "espeak-ng" in ready and "out_of_order" in ready and "unavailable" in ready, ready
    cached = box.run(["find", f"{L['KIOSK_HOME']}/prompts", "-name", "*.wav", "-user",
                      L["KIOSK_USER"]], check=True).stdout.split()
    assert {Path(path).name.split("-")[0] for path in cached} == \
        {"out_of_order", "unavailable"}, cached


def normalized(name: str) -> str:
    return str(canonicalize_name(name))


def runtime_closure(dists: list[dict[str, Any]], root: str) -> set[str]:
    """The distributions `root` needs at run time on this interpreter (no extras), by the
    markers of its requirements: what its environment must hold, and nothing else."""
    by_name = {normalized(d["name"]): d for d in dists}
    env: dict[str, str] = {**default_environment(), "python_version": "3.11",
                           "sys_platform": "linux", "platform_system": "Linux", "extra": ""}
    needed: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for spec in by_name[name]["requires"]:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(normalized(req.name))
    return needed


def test_sbom_lists_exactly_the_shipped_environment(package: Result, box: Container,
                                                    debs: tuple[Build, Build]) -> None:
    """The CycloneDX SBOM (beside the .deb and inside the package) names the package as its
    subject and lists every distribution of the installed virtual environment with its
    version, and nothing else; that environment holds exactly the kiosk's runtime
    dependencies (no pip, setuptools or test tools)."""
    shipped = box.read(SBOM)
    assert shipped == debs[0].sbom.read_text()
    sbom = json.loads(shipped)
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    subject = sbom["metadata"]["component"]
    assert (subject["name"], subject["version"]) == ("voice-kiosk", debs[0].version)
    assert subject["purl"].startswith(f"pkg:deb/voice-kiosk@{debs[0].version}?arch=")
    listed = {(normalized(c["name"]), c["version"]) for c in sbom["components"]}
    assert all(c["purl"].startswith("pkg:pypi/") for c in sbom["components"])
    dists = json.loads(box.run([VENV_PYTHON, "-c", LIST_DISTS], check=True, cwd="/").stdout)
    installed = {(normalized(d["name"]), d["version"]) for d in dists}
    assert listed == installed, {"only in the SBOM": listed - installed,
                                 "only in the venv": installed - listed}
    assert {name for name, _ in installed} == runtime_closure(dists, "voice-kiosk")
    assert {"numpy", "pyaudio", "gpiozero", "lgpio", "systemd-python"} <= \
        {name for name, _ in installed}


@pytest.mark.timeout(600)
def test_upgrade_keeps_the_edited_config(gateway: dict[str, str], box: Container,
                                         service: Service, debs: tuple[Build, Build],
                                         debs_inside: tuple[str, str]) -> None:
    """`apt install` of a newer build: the ward's edited config.yaml (a conffile) is kept
    byte for byte with its owner and mode, the key and its drop-in stay, and the service
    is restarted on the new version and passes its self-check again."""
    service.edit_config(audio={"volume": 55})
    box.run(["sh", "-c", f"echo '# ward 3: quieter at night' >> {L['KIOSK_CONFIG']}"],
            check=True)
    before = box.read(L["KIOSK_CONFIG"])
    pid = service.show("MainPID")["MainPID"]
    result = apt_get(box, "install", f"./{Path(debs_inside[1]).name}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert status(box) == f"ii  {debs[1].version}", status(box)
    assert box.read(L["KIOSK_CONFIG"]) == before
    assert stat(box, L["KIOSK_CONFIG"]) == \
        f"{int(L['KIOSK_CONFIG_MODE'], 8):o} root voice-kiosk"
    leftovers = box.run(["sh", "-c", f"ls {L['KIOSK_ETC']}"], check=True).stdout.split()
    assert sorted(leftovers) == ["config.yaml", "gateway-api-key"], leftovers
    assert box.exists(L["KIOSK_CREDENTIALS_DROPIN"])
    now = service.wait_show("the service to be restarted on the new version",
                            lambda p: p["ActiveState"] == "active" and p["MainPID"] not in
                            ("0", pid), "ActiveState", "MainPID", timeout_s=60)
    assert now["MainPID"] != pid
    lines = wait_selfcheck(service)
    assert all(line.startswith("self-check: ok") for line in lines), lines
    assert service.config()["audio"]["volume"] == 55


@pytest.mark.timeout(600)
def test_remove_stops_it_and_purge_retires_the_kiosk(gateway: dict[str, str], box: Container,
                                                     service: Service) -> None:
    """`apt remove`: the service stops, nothing of it runs, the program goes (compiled
    files too) and the configuration, keys and account stay. `apt purge`: configuration,
    keys, drop-ins, state, metrics file, the metrics ACL and the account go as well, and
    nothing of the package is left anywhere."""
    uid = box.run(["id", "-u", L["KIOSK_USER"]], check=True).stdout.strip()
    removed = apt_get(box, "remove", "voice-kiosk")
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr[-3000:]
    assert service.show("LoadState")["LoadState"] == "not-found"
    assert box.run(["pgrep", "-u", uid]).returncode == 1  # no process of the account
    assert not box.exists(L["KIOSK_PREFIX"])
    assert box.exists(L["KIOSK_CONFIG"]) and box.exists(f"{L['KIOSK_ETC']}/gateway-api-key")
    assert box.run(["getent", "passwd", L["KIOSK_USER"]]).returncode == 0
    assert status(box).startswith("rc"), status(box)

    purged = apt_get(box, "purge", "voice-kiosk")
    assert purged.returncode == 0, purged.stdout[-3000:] + purged.stderr[-3000:]
    assert status(box) in ("", "un "), status(box)
    left = [p for p in (*PACKAGE_PATHS, L["KIOSK_HOME"], TEXTFILE,
                        f"/etc/systemd/system/{SERVICE}.d",
                        f"/etc/systemd/system/multi-user.target.wants/{SERVICE}")
            if box.run(["test", "-e", p, "-o", "-L", p]).returncode == 0]
    assert not left, left
    for database, name in (("passwd", L["KIOSK_USER"]), ("group", L["KIOSK_GROUP"])):
        assert box.run(["getent", database, name]).returncode == 2, name
    acl = box.run(["getfacl", "-n", "-p", "--omit-header", L["KIOSK_TEXTFILE_DIR"]]).stdout
    assert f"user:{uid}:" not in acl, acl
    processes = box.run(["ps", "-e", "-o", "uid=,comm="], check=True).stdout
    assert not [line for line in processes.splitlines() if line.split()[0] == uid], processes
    # systemd may still hold the unit's name (this test asked about it): with no file,
    # inactive and dead.
    units = box.run(["systemctl", "list-units", "--all", "--no-legend", "--plain",
                     "voice-kiosk*"]).stdout.splitlines()
    assert all(line.split()[1:4] == ["not-found", "inactive", "dead"] for line in units), units

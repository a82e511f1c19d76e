"""The Ansible role (deploy/ansible) run for real against a kiosk: the booted container, with
Ansible installed inside and the playbook run there with the local connection, twice.

The inventory is the example's shape for one kiosk: the gateway and the package file in
group_vars, the location in host_vars, the key in an Ansible Vault file. The gateway is the
simulator on the container's loopback, run from the test rig's own unpacked copy of the
package (the package itself is the role's to install).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
import yaml

from tests.installed.debs import Build, layout
from tests.installed.kiosk_service import (
    CHECKOUT,
    Service,
    rig_kiosk_copy,
    setup_rig_audio,
    setup_rig_pins,
    start_gateway,
)
from tests.installed.rig import REPO, Container, Result

pytestmark = pytest.mark.installed

L = layout()
KIOSK = "ward3-bed12"
LOCATION = "ward 3, bed 12"
PLAYBOOK_DIR = f"{CHECKOUT}/deploy/ansible"
FLEET = "/root/fleet"  # the test's inventory (root-only: it holds the vault password)
VAULT_PASS = f"{FLEET}/.vault-pass"
VAULT = f"{FLEET}/host_vars/{KIOSK}/vault.yml"
DEB_DIR = "/var/tmp/voice-kiosk-debs"
RECAP = re.compile(rf"(?m)^{KIOSK}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                   rf"failed=(\d+)")
PLAYBOOK_TIMEOUT_S = 600


def playbook(box: Container) -> tuple[Result, dict[str, int]]:
    """`ansible-playbook site.yml` from the role's directory, as IT staff run it (vault
    password from a file); the result and its PLAY RECAP for the kiosk."""
    result = box.run(["ansible-playbook", "-i", f"{FLEET}/hosts.yml", "site.yml",
                      "--vault-password-file", VAULT_PASS],
                     cwd=PLAYBOOK_DIR, env={"ANSIBLE_NOCOLOR": "1"},
                     timeout=PLAYBOOK_TIMEOUT_S)
    match = RECAP.search(result.stdout)
    assert match, f"no PLAY RECAP for {KIOSK}:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()),
                     strict=True))
    return result, recap


@pytest.fixture(scope="module")
def fleet(box: Container, debs: tuple[Build, Build]) -> dict[str, str]:
    """Ansible in the container, the package file where the controller keeps it, the
    gateway, and an inventory of this one kiosk with its key in a vault."""
    setup_rig_audio(box)
    setup_rig_pins(box)
    box.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "ansible-core",
             "python3-apt"], env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300,
            check=True)
    deb = f"{DEB_DIR}/{debs[0].deb.name}"
    box.write(deb, debs[0].deb.read_bytes())
    info = start_gateway(box, python=rig_kiosk_copy(box, deb))
    box.run(["install", "-d", "-m", "0700", FLEET], check=True)
    box.write(VAULT_PASS, secrets.token_urlsafe(24), mode="0600")
    box.write(f"{FLEET}/hosts.yml", yaml.safe_dump({"kiosks": {"hosts": {KIOSK: {
        "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}}}}))
    box.write(f"{FLEET}/group_vars/kiosks.yml", yaml.safe_dump({
        "voice_kiosk_gateway_url": info["gateway_url"],
        "voice_kiosk_package_file": deb,
        "voice_kiosk_gateway_api_key": "{{ vault_voice_kiosk_gateway_api_key }}"}))
    box.write(f"{FLEET}/host_vars/{KIOSK}/vars.yml",
              yaml.safe_dump({"voice_kiosk_location": LOCATION}))
    # Encrypted from standard input: the key is never in a file in clear.
    box.run(["ansible-vault", "encrypt", "--vault-password-file", VAULT_PASS,
             "--output", VAULT, "-"],
            input=yaml.safe_dump({"vault_voice_kiosk_gateway_api_key": info["api_key"]}),
            check=True, timeout=60)
    return info


@pytest.fixture(scope="module")
def first_run(box: Container, fleet: dict[str, str]) -> tuple[Result, dict[str, int]]:
    return playbook(box)


def test_role_defaults_follow_the_shared_layout() -> None:
    """The role's paths are systemd/layout.env's (the one source install.sh and the package
    read), and its drop-in is the one install.sh writes."""
    role = yaml.safe_load((REPO / "deploy/ansible/roles/voice_kiosk/vars/main.yml").read_text())
    assert role["voice_kiosk_venv"] == L["KIOSK_VENV"]
    assert role["voice_kiosk_etc"] == L["KIOSK_ETC"]
    assert role["voice_kiosk_config"] == L["KIOSK_CONFIG"]
    assert role["voice_kiosk_secret_mode"] == L["KIOSK_SECRET_MODE"]
    assert role["voice_kiosk_credentials_dropin"] == L["KIOSK_CREDENTIALS_DROPIN"]
    assert role["voice_kiosk_unit"] == f"{L['KIOSK_NAME']}.service"
    assert role["voice_kiosk_credential"] in L["KIOSK_SECRETS"].split(",")


@pytest.mark.timeout(1800)  # may build the packages first
def test_role_converges(first_run: tuple[Result, dict[str, int]], fleet: dict[str, str],
                        box: Container, service: Service) -> None:
    """The first run installs the package, writes the kiosk's id, location and gateway into
    config.yaml (every other line as the package shipped it), the key root-only with its
    LoadCredential= drop-in, and ends with the service active and its self-check passed."""
    result, recap = first_run
    assert result.returncode == 0 and recap["failed"] == 0, result.stdout[-5000:]
    assert recap["changed"] > 0, recap
    assert re.search(rf'"msg": "voice-kiosk on {KIOSK}: \w+ \({KIOSK}\): self-check ok"',
                     result.stdout), result.stdout[-3000:]
    assert box.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "voice-kiosk"]
                   ).stdout.startswith("ii")
    config = service.config()
    assert (config["kiosk"]["id"], config["kiosk"]["location"]) == (KIOSK, LOCATION)
    assert config["gateway"]["url"] == fleet["gateway_url"]
    assert config["gateway"]["api_key_file"] == "${CREDENTIALS_DIRECTORY}/gateway-api-key"
    shipped = (REPO / "config/voice-kiosk.yaml").read_text().splitlines()
    now = box.read(L["KIOSK_CONFIG"]).splitlines()
    changed = [line for line in shipped if line not in now]
    assert [line.split(":")[0].strip() for line in changed] == \
        ["id", "location", "url", "api_key_file"], changed
    assert len(now) == len(shipped)
    assert box.run(["stat", "-c", "%a %U %G", L["KIOSK_CONFIG"]], check=True).stdout.split() \
        == [f"{int(L['KIOSK_CONFIG_MODE'], 8):o}", "root", "voice-kiosk"]
    key_file = f"{L['KIOSK_ETC']}/gateway-api-key"
    assert box.run(["stat", "-c", "%a %U %G", key_file], check=True).stdout.split() == \
        ["600", "root", "root"]
    assert box.read(key_file) == fleet["api_key"]
    assert box.read(L["KIOSK_CREDENTIALS_DROPIN"]).splitlines()[-1] == \
        f"LoadCredential=gateway-api-key:{key_file}"
    copy = "/run/credentials/voice-kiosk.service/gateway-api-key"
    assert box.read(copy) == fleet["api_key"]
    lines = service.selfcheck()
    assert lines and all(line.startswith("self-check: ok") for line in lines), lines
    # The key in clear only where systemd and the service read it.
    for where in (FLEET, PLAYBOOK_DIR, L["KIOSK_CONFIG"]):
        found = box.run(["grep", "-rlF", fleet["api_key"], where])
        assert found.returncode == 1, f"the key in clear in {found.stdout}"
    assert fleet["api_key"] not in result.stdout + result.stderr


@pytest.mark.timeout(PLAYBOOK_TIMEOUT_S)
def test_second_run_changes_nothing_and_keeps_the_wards_edit(
        first_run: tuple[Result, dict[str, int]], box: Container, service: Service) -> None:
    """After the ward's own edit of config.yaml, a second run reports changed=0: the edit
    stays, the service is not restarted, and the checks pass again."""
    box.run(["sed", "-i", r"s/^  volume: 80 /  volume: 55 /", L["KIOSK_CONFIG"]], check=True)
    edited = box.read(L["KIOSK_CONFIG"])
    assert "  volume: 55 " in edited
    pid = service.show("MainPID")["MainPID"]
    result, recap = playbook(box)
    assert result.returncode == 0, result.stdout[-5000:]
    assert (recap["changed"], recap["failed"]) == (0, 0), result.stdout[-5000:]
    assert box.read(L["KIOSK_CONFIG"]) == edited
    assert service.show("MainPID")["MainPID"] == pid


def test_config_module_keeps_comments_and_refuses_block_values() -> None:
    """The role's module on the shipped example: only the asked keys' values change (their
    comments stay in place), a second pass changes nothing, a missing key or section is
    added, and a key with a block value is refused rather than mangled."""
    import importlib.util

    source = REPO / "deploy/ansible/roles/voice_kiosk/library/voice_kiosk_config.py"
    spec = importlib.util.spec_from_file_location("voice_kiosk_config", source)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    example = (REPO / "config/voice-kiosk.yaml").read_text()
    wanted = {"kiosk": {"id": KIOSK, "location": LOCATION},
              "gateway": {"url": "https://voice.hospital.example"}}
    edited = module.edit(example, wanted)
    module.verify(edited, wanted)
    assert module.edit(edited, wanted) == edited
    assert f'  id: "{KIOSK}"         # Name of this kiosk' in edited
    assert sum(a != b for a, b in zip(example.splitlines(), edited.splitlines(),
                                      strict=True)) == 3
    # A key whose comment runs on over the next lines (kiosk.language in the example).
    german = module.edit(example, {"kiosk": {"language": "de"}})
    assert yaml.safe_load(german)["kiosk"]["language"] == "de"
    assert len(german.splitlines()) == len(example.splitlines())
    added = module.edit("kiosk:\n  id: x\n\naudio:\n  volume: 3\n",
                        {"kiosk": {"location": LOCATION}, "metrics": {"interval_s": 5.0}})
    assert yaml.safe_load(added) == {"kiosk": {"id": "x", "location": LOCATION},
                                     "audio": {"volume": 3}, "metrics": {"interval_s": 5.0}}
    with pytest.raises(module.ConfigEditError, match="block value"):
        module.edit(example, {"realtime": {"instructions": "Be brief."}})
    assert Path(source).read_text().startswith("#!/usr/bin/python")

"""Fixtures of the installed tier: one freshly booted systemd container per test module.

The tier needs root (directly or through passwordless sudo). Without it the tests *fail*
with a message saying so; they are never skipped, because CI (which runs as root) must not
pass by not running them.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.installed.debs import Build, ensure_debs
from tests.installed.kiosk_service import (
    KIOSK_ID,
    Service,
    copy_checkout,
    install_key,
    install_sh,
    setup_rig_audio,
    setup_rig_pins,
    start_gateway,
)
from tests.installed.rig import (
    Container,
    Privileges,
    Result,
    RigError,
    ensure_rootfs,
    require_tools,
    sweep_stale,
)


def _log(message: str) -> None:
    print(f"[installed] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def priv() -> Privileges:
    try:
        require_tools()
        return Privileges.detect()
    except RigError as exc:
        pytest.fail(f"the installed tier cannot run: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def rootfs(priv: Privileges) -> Path:
    """The pristine root's tarball (built on first use, ~80 s), after removing containers
    that an earlier, killed test run left behind."""
    for name in sweep_stale(priv):
        _log(f"removed a stale container: {name}")
    return ensure_rootfs(priv, log=_log)


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Build, Build]:
    """The Debian package (packaging/build-deb.sh) at the checkout's version and a higher
    one from the same source, built on this machine when their sources changed (about a
    minute each), else from the cache; this run's own copy of them."""
    try:
        return ensure_debs(tmp_path_factory.mktemp("debs"), log=_log)
    except RigError as exc:
        pytest.fail(f"the package does not build: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def box(priv: Privileges, rootfs: Path) -> Iterator[Container]:
    """A fresh container for this module, with the checkout in pi's home. It is stopped
    and removed when the module ends, pass or fail (a SIGTERM to the test run too)."""
    previous = signal.getsignal(signal.SIGTERM)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the cleanup below

    signal.signal(signal.SIGTERM, interrupt)
    try:
        with Container.boot(priv, rootfs) as container:
            copy_checkout(container)
            yield container
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def service(box: Container) -> Service:
    return Service(box)


@pytest.fixture(scope="module")
def installed(box: Container, service: Service) -> Result:
    """The test rig's sound server and pins, then the README's `sudo bash
    systemd/install.sh` as pi. The kiosk runs on the example configuration it installs."""
    setup_rig_audio(box)
    setup_rig_pins(box)
    result = install_sh(box)
    if result.returncode != 0:
        pytest.fail(f"`sudo bash systemd/install.sh` exited {result.returncode}:\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n"
                    f"{service.journal_tail()}", pytrace=False)
    return result


@pytest.fixture(scope="module")
def gateway(box: Container, service: Service, installed: Result) -> dict[str, str]:
    """The README's gateway setup against the simulator on the container's loopback: the
    key in a root-only file, install.sh again (it adds LoadCredential=), gateway.url and
    api_key_file in config.yaml, restart."""
    info = start_gateway(box)
    install_key(box, info["api_key"])
    result = install_sh(box)
    if result.returncode != 0:
        pytest.fail(f"install.sh (second run, with a key file) exited {result.returncode}:"
                    f"\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}", pytrace=False)
    service.edit_config(kiosk={"id": KIOSK_ID, "location": "ward 3, bed 12"},
                        gateway={"url": info["gateway_url"],
                                 "api_key_file": "${CREDENTIALS_DIRECTORY}/gateway-api-key"})
    service.restart().check()
    service.wait_active()
    return info


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    """On a failure, attach the kiosk's journal and unit status from the container."""
    outcome = yield
    report = outcome.get_result()
    container = getattr(item, "funcargs", {}).get("box")
    if report.failed and isinstance(container, Container) and container.running():
        try:
            status = container.run(["systemctl", "status", "--no-pager", "-n", "0",
                                    "voice-kiosk"], timeout=20).stdout
            journal = container.run(["journalctl", "-u", "voice-kiosk", "-n", "60",
                                     "--no-pager"], timeout=20).stdout
            report.sections.append(("container: systemctl status voice-kiosk", status))
            report.sections.append(("container: journalctl -u voice-kiosk", journal))
        except (RigError, OSError) as exc:
            report.sections.append(("container", f"could not collect diagnostics: {exc}"))

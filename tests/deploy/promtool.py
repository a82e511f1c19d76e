"""Debian's promtool, without Debian's Prometheus server.

`promtool` ships in Debian's `prometheus` package, and installing that package also enables
and starts a Prometheus server (port 9090, no authentication, a database under
/var/lib/prometheus): on a Pi where someone ran `bootstrap.sh demo`, on a developer's
machine, and in the installed tier's container, which shares the host's network. So the
tests take promtool out of the same Debian package without installing it:
`apt-get download prometheus` (apt checks the file against the signed archive), then
`/usr/bin/promtool` is extracted from it with `dpkg-deb` into the tests' cache, once per
package version. No root needed, and nothing is started or enabled.

A machine that has the `prometheus` package installed uses its /usr/bin/promtool; PROMTOOL
names another one (the tests are written for Debian 12's promtool 2.42).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tests.installed.rig import cache_dir

PACKAGE = "prometheus"
MEMBER = "./usr/bin/promtool"


class PromtoolUnavailable(RuntimeError):
    """promtool cannot be had here; the message says what to do."""


def _run(argv: list[str], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C"}  # apt-cache's "Candidate:" is translated otherwise
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                          cwd=cwd, env=env)


def installed_version() -> str | None:
    """The version of the installed `prometheus` package, if it is installed."""
    if shutil.which("dpkg-query") is None:
        return None
    result = _run(["dpkg-query", "-W", "-f=${Status}\t${Version}", PACKAGE])
    status, _, version = result.stdout.partition("\t")
    return version if result.returncode == 0 and status == "install ok installed" else None


def candidate_version() -> str:
    """The version apt would install, from its package lists."""
    if shutil.which("apt-cache") is None:
        raise PromtoolUnavailable("no apt-cache: promtool comes from Debian's 'prometheus' "
                                  "package; set PROMTOOL to a promtool binary instead")
    result = _run(["apt-cache", "policy", PACKAGE])
    for line in result.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate" and value.strip() not in ("", "(none)"):
            return value.strip()
    raise PromtoolUnavailable(
        f"apt knows no '{PACKAGE}' package (its package lists are missing or old): run "
        "`sudo apt-get update` once, then the tests again")


def extract_from_deb(deb: Path, target: Path) -> None:
    """Write the deb's /usr/bin/promtool to target (atomically, mode 0755)."""
    partial = target.with_name(target.name + ".partial")
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        found = False
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                if member.name == MEMBER and member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    with open(partial, "wb") as out:
                        shutil.copyfileobj(source, out)
                    found = True
                    break
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.wait()
    if not found:
        raise PromtoolUnavailable(f"{deb.name} has no {MEMBER} ({stderr.strip()})")
    partial.chmod(0o755)
    os.replace(partial, target)


def debian_promtool() -> Path:
    """promtool from the candidate `prometheus` package, downloaded and extracted once."""
    version = candidate_version()
    arch = _run(["dpkg", "--print-architecture"]).stdout.strip() or "unknown"
    folder = cache_dir() / f"promtool-{version.replace(':', '_')}-{arch}"
    target = folder / "promtool"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="promtool-") as tmp:
        got = _run(["apt-get", "download", f"{PACKAGE}={version}"], cwd=tmp)
        debs = sorted(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        if got.returncode != 0 or not debs:
            raise PromtoolUnavailable(
                f"`apt-get download {PACKAGE}={version}` failed ({got.returncode}): "
                f"{got.stderr.strip()[-600:]}")
        extract_from_deb(debs[0], target)
    return target


def find_promtool() -> Path:
    """PROMTOOL, else the installed package's promtool, else Debian's extracted one."""
    named = os.environ.get("PROMTOOL")
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PromtoolUnavailable(f"PROMTOOL={named} is not an executable file")
        return path
    if installed_version() is not None and Path("/usr/bin/promtool").is_file():
        return Path("/usr/bin/promtool")
    return debian_promtool()

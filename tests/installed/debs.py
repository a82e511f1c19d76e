"""The Debian packages under test, built by the README's command and cached by their sources.

`packaging/build-deb.sh` runs on this machine (the container has no build tools, as a kiosk
has none) once per state of the files that go into the package, for two versions of the same
source: the checkout's version and a higher one, the upgrade. Later test runs reuse them
while those files are unchanged; a change rebuilds both (about a minute each).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.installed.rig import REPO, RigError, cache_dir, checkout_files

BUILD_SH = REPO / "packaging/build-deb.sh"
# What the package is made of: anything else in the checkout (tests, bench) leaves it as is.
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "kiosk/", "config/", "systemd/", "packaging/")
UPGRADE_SUFFIX = "+1"  # the upgrade's version: the same source, a higher version
BUILD_TIMEOUT_S = 1500.0


def kiosk_version() -> str:
    """kiosk.__version__, as build-deb.sh reads it."""
    match = re.search(r'(?m)^__version__ = "(.+)"$', (REPO / "kiosk/__init__.py").read_text())
    assert match, "no __version__ in kiosk/__init__.py"
    return match.group(1)


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          timeout=30, check=True).stdout.strip()


def source_digest() -> str:
    """A hash of the files the package is built from (names and contents)."""
    digest = hashlib.sha256()
    for rel, path in sorted(checkout_files(REPO).items()):
        if rel.startswith(PACKAGE_SOURCES) and "__pycache__" not in rel:
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Build:
    """One built package and what build-deb.sh wrote beside it."""

    version: str
    deb: Path
    seconds: float  # how long its build took (when it was built, perhaps in an earlier run)

    def sibling(self, suffix: str) -> Path:
        """build-deb.sh's other outputs: `.cdx.json`, `.lintian.txt`, `.buildinfo`."""
        return self.deb.with_name(self.deb.name.removesuffix(".deb") + suffix)

    @property
    def sbom(self) -> Path:
        return self.sibling(".cdx.json")

    @property
    def lintian(self) -> Path:
        return self.sibling(".lintian.txt")


def _build(version: str, out: Path, lintian: bool) -> float:
    """Run the README's build command for one version into `out`; its duration."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    started = time.monotonic()
    args = ["bash", str(BUILD_SH), "--out", str(out), "--version", version]
    result = subprocess.run(args + ([] if lintian else ["--no-lintian"]), cwd=REPO,
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env)
    if result.returncode != 0:
        raise RigError(f"{' '.join(args)} exited {result.returncode}:\n"
                       f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return time.monotonic() - started


def ensure_debs(into: Path, log: Callable[[str], None] | None = None) -> tuple[Build, Build]:
    """The package at the checkout's version and its upgrade, built if not cached, and
    copied with build-deb.sh's other outputs into `into` (this test run's own directory).

    A lock keeps two test runs from building at once; other source states' builds are
    deleted once these exist. That is why each run works on its own copy: another
    checkout's run (another branch on the same machine) may delete this state's cache
    folder while this run still uses the packages."""
    base = kiosk_version()
    versions = (base, base + UPGRADE_SUFFIX)
    arch = host_arch()
    cache = cache_dir() / "debs"
    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / source_digest()
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        timings_file = folder / "build-seconds.json"
        timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
        for version in versions:
            deb = folder / f"voice-kiosk_{version}_{arch}.deb"
            if deb.exists() and version in timings:
                continue
            if log:
                log(f"building voice-kiosk {version} with packaging/build-deb.sh into {folder}")
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            # lintian once: the upgrade is the same files at another version.
            timings[version] = round(_build(version, partial, lintian=version == base), 1)
            folder.mkdir(exist_ok=True)
            for produced in partial.iterdir():
                produced.rename(folder / produced.name)
            partial.rmdir()
            timings_file.write_text(json.dumps(timings))
        into.mkdir(parents=True, exist_ok=True)
        for produced in folder.iterdir():
            shutil.copy2(produced, into / produced.name)
        for old in cache.iterdir():
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
    builds = tuple(Build(v, into / f"voice-kiosk_{v}_{arch}.deb", timings[v])
                   for v in versions)
    return builds[0], builds[1]


LAYOUT_ENV = REPO / "systemd/layout.env"


def layout() -> dict[str, str]:
    """systemd/layout.env: the paths, account and modes install.sh and the package share."""
    values = {}
    for line in LAYOUT_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values

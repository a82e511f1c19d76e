"""A real systemd in a container: the rig of the installed test tier.

The installed tests need what a hospital's Pi has and the development machine lacks: systemd
as PID 1 managing the kiosk's real unit. `systemd-nspawn` boots one here from a pristine Debian
12 root filesystem (a fresh Pi, minus the hardware), and the tests drive it from outside:

    priv = Privileges.detect()              # root, or sudo -n; else a clear RigError
    tarball = ensure_rootfs(priv)           # built once by debootstrap, then cached
    with Container.boot(priv, tarball) as box:
        box.run(["systemctl", "is-system-running"])
        box.run(["bash", "-c", "..."], user="pi")

Everything the rig starts is tracked by PID and stopped by PID (its commands inside, the
nspawn process, the container's PID 1), then its directory is removed, also when a test
fails; a sweep at start removes containers whose test run died without cleaning up.

Why not machinectl or `systemd-run -M`: both need systemd as the host's PID 1, which this
machine (and CI) does not have. Commands run inside through `nsenter --all` on the
container's PID 1 instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MKROOTFS = HERE / "mkrootfs.sh"

# Containers live here while they run (root-owned content, so not in a user's directory).
MACHINES_DIR = Path("/var/tmp/voice-kiosk-tests")
MACHINE_PREFIX = "vk-test-"
# The PATH a login shell has inside; the host's (a venv, /opt tools) must not leak in.
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"

# The fresh system: Debian's defaults plus what a newly flashed Raspberry Pi OS Lite also has
# (python3, curl). Deliberately no git: the checkout is copied in as a user would unpack it.
BASE_PACKAGES = ("systemd-sysv", "dbus", "sudo", "ca-certificates", "libpam-systemd",
                 "python3", "curl")
# Downloaded into apt's cache only, so the README's commands install them without waiting
# for the network: the kiosk's package lists, the rig's sound server and tools, what the
# metrics test installs, and Ansible for the deployment test (python3-apt for its apt
# module). Nothing here is installed in the pristine root.
RIG_PACKAGES = ("pulseaudio", "pulseaudio-utils", "libasound2-plugins", "alsa-utils",
                "acl", "strace", "prometheus-node-exporter", "ansible-core", "python3-apt")
PACKAGE_LISTS = (REPO / "systemd/packages-runtime.txt", REPO / "systemd/packages-dev.txt")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# The container's root lives on its own tmpfs when there is memory to spare: extracting
# 13 000 files and dpkg's fsync()s are several times faster there than on a disk (10 s
# against 1.5 s for the extraction alone on the development machine). It grows to ~1.5 GB.
TMPFS_SIZE = "6G"
TMPFS_MIN_AVAILABLE_KIB = 8 * 1024 * 1024

BOOT_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


class RigError(RuntimeError):
    """The container rig cannot run here; the message says what is missing."""


# -- privileges ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Privileges:
    """How to run a privileged command: directly as root, or through `sudo -n` (never a
    password prompt: a test run must not hang waiting for one)."""

    prefix: tuple[str, ...]

    @classmethod
    def detect(cls) -> Privileges:
        if os.geteuid() == 0:
            return cls(())
        if shutil.which("sudo"):
            probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=30)
            if probe.returncode == 0:
                return cls(("sudo", "-n"))
        raise RigError(
            "the installed tests boot a systemd container and need root: run them as root, "
            "or as a user with passwordless sudo (sudo -n true must succeed)")

    @property
    def is_root(self) -> bool:
        return not self.prefix

    def cmd(self, argv: Sequence[str]) -> list[str]:
        return [*self.prefix, *argv]

    def run(self, argv: Sequence[str], *, timeout: float, check: bool = True,
            input: bytes | None = None, stdout: int | IO[bytes] | None = subprocess.PIPE,
            stdin: int | IO[bytes] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run a privileged host command; on failure raise with its output."""
        result = subprocess.run(self.cmd(argv), input=input, stdin=stdin, stdout=stdout,
                                stderr=subprocess.PIPE, timeout=timeout)
        if check and result.returncode != 0:
            raise RigError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{_tail(result.stderr)}")
        return result

    def kill(self, pid: int, sig: signal.Signals) -> None:
        """Signal one process by PID (it may belong to root)."""
        if self.is_root:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        else:
            subprocess.run(self.cmd(["kill", f"-{sig.name.removeprefix('SIG')}", str(pid)]),
                           capture_output=True, timeout=30)


def _tail(data: bytes | str | None, lines: int = 30) -> str:
    if not data:
        return "(no output)"
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return "\n".join(text.rstrip().splitlines()[-lines:])


def require_tools() -> None:
    """The host tools the rig uses (systemd/packages-dev.txt lists their packages)."""
    missing = [tool for tool in ("debootstrap", "systemd-nspawn", "nsenter", "tar", "zstd")
               if not shutil.which(tool) and not Path("/usr/sbin", tool).exists()]
    if missing:
        raise RigError(f"missing host tools: {', '.join(missing)}; run "
                       f"`bash systemd/bootstrap.sh venv` (installs systemd/packages-dev.txt)")


# -- the cached root filesystem --------------------------------------------------------------


def cache_dir() -> Path:
    """Where the pristine root's tarball is kept between runs."""
    if os.geteuid() == 0:
        return Path("/var/cache/voice-kiosk-tests")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voice-kiosk-tests"


def _package_list(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def _host_apt_sources() -> list[Path]:
    """The host's Debian sources: enabled files that use no keyring but Debian's (a
    third-party repository would need its key inside too)."""
    candidates = [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    chosen = []
    for path in candidates:
        if not path.is_file():
            continue
        text = "\n".join(line for line in path.read_text().splitlines()
                         if line.strip() and not line.lstrip().startswith("#"))
        keyrings = set(re.findall(r"(?i)signed-by[:=]\s*(\S+?)\]?(?:\s|$)", text))
        if text and "bookworm" in text and keyrings <= {DEBIAN_KEYRING}:
            chosen.append(path)
    return chosen


def _mirror(sources: Sequence[Path]) -> str:
    """The Debian mirror the host's sources name for the main suite."""
    for path in sources:
        text = path.read_text()
        for uri in re.findall(r"(?m)^URIs:\s*(\S+)", text):
            if "security" not in uri:
                return uri
        for uri in re.findall(r"(?m)^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text):
            return uri
    return DEFAULT_MIRROR


@dataclass
class RootfsRecipe:
    """Everything that decides the pristine root's content; its hash names the tarball."""

    include: tuple[str, ...] = BASE_PACKAGES
    prefetch: tuple[str, ...] = ()
    ca_files: tuple[Path, ...] = ()
    sources: tuple[Path, ...] = ()
    mirror: str = DEFAULT_MIRROR

    @classmethod
    def default(cls) -> RootfsRecipe:
        prefetch: list[str] = []
        for path in PACKAGE_LISTS:
            prefetch += [p for p in _package_list(path) if p not in prefetch]
        prefetch += [p for p in RIG_PACKAGES if p not in prefetch]
        sources = tuple(_host_apt_sources())
        return cls(prefetch=tuple(prefetch), sources=sources, mirror=_mirror(sources),
                   ca_files=tuple(sorted(HOST_CA_DIR.glob("*.crt"))))

    def key(self) -> str:
        digest = hashlib.sha256()
        digest.update(MKROOTFS.read_bytes())
        digest.update(json.dumps([self.include, self.prefetch, self.mirror]).encode())
        for path in (*self.ca_files, *self.sources):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:16]


def ensure_rootfs(priv: Privileges, recipe: RootfsRecipe | None = None,
                  log: Callable[[str], None] | None = None) -> Path:
    """The cached tarball of the pristine root, built first if this recipe has none.

    A lock keeps two test runs from building the same root at once; an older recipe's
    tarball is deleted once the new one exists."""
    recipe = recipe or RootfsRecipe.default()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"rootfs-bookworm-{recipe.key()}.tar.zst"
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball
        if log:
            log(f"building the container's root filesystem (debootstrap) into {tarball}")
        _build_rootfs(priv, recipe, tarball)
        for old in cache.glob("rootfs-bookworm-*.tar.zst"):
            if old != tarball:
                old.unlink()
    return tarball


def _build_rootfs(priv: Privileges, recipe: RootfsRecipe, tarball: Path) -> None:
    require_tools()
    partial = tarball.with_name(tarball.name + ".partial")
    work = _new_machine_dir(priv, "build")
    root = work / "root"
    try:
        _make_root(priv, root)
        priv.run(["bash", str(MKROOTFS), str(root), recipe.mirror, ",".join(recipe.include),
                  " ".join(recipe.prefetch),
                  str(HOST_CA_DIR) if recipe.ca_files else "",
                  *map(str, recipe.sources)], timeout=900)
        with open(partial, "wb") as out:
            # The user running the tests owns the tarball; root only reads the tree.
            priv.run(["tar", "-C", str(root), "--numeric-owner", "--xattrs", "-I",
                      "zstd -T0 -3", "-cf", "-", "."], stdout=out, timeout=600)
        partial.rename(tarball)
    finally:
        partial.unlink(missing_ok=True)
        _remove_machine_dir(priv, work)


# -- containers ------------------------------------------------------------------------------


def _new_machine_dir(priv: Privileges, kind: str) -> Path:
    """A fresh root-owned directory for one container, with an owner record for the sweep."""
    priv.run(["mkdir", "-p", "-m", "0755", str(MACHINES_DIR)], timeout=30)
    name = f"{MACHINE_PREFIX}{kind}-{os.getpid()}-{secrets.token_hex(3)}"
    path = MACHINES_DIR / name
    priv.run(["mkdir", "-m", "0755", str(path)], timeout=30)
    owner = {"owner_pid": os.getpid(), "owner_start": _start_time(os.getpid())}
    _write_host(priv, path / "owner.json", json.dumps(owner).encode())
    return path


def _make_root(priv: Privileges, root: Path) -> None:
    """The empty directory a root file system goes into: its own tmpfs if memory allows."""
    priv.run(["mkdir", "-m", "0755", str(root)], timeout=30)
    if _memory_to_spare():
        priv.run(["mount", "-t", "tmpfs", "-o", f"mode=0755,size={TMPFS_SIZE}",
                  "voice-kiosk-test", str(root)], timeout=30)


def _remove_machine_dir(priv: Privileges, path: Path) -> None:
    """Unmount the container's tmpfs (if any), then delete its directory."""
    if path.parent != MACHINES_DIR or not path.name.startswith(MACHINE_PREFIX):
        return
    root = path / "root"
    if (_is_mountpoint(root)
            and priv.run(["umount", str(root)], timeout=60, check=False).returncode != 0):
        priv.run(["umount", "--lazy", str(root)], timeout=60, check=False)
    if _is_mountpoint(root):
        raise RigError(f"cannot unmount {root}; remove it by hand")
    priv.run(["rm", "-rf", "--one-file-system", str(path)], timeout=300, check=False)


def _is_mountpoint(path: Path) -> bool:
    target = str(path).encode()
    with open("/proc/self/mountinfo", "rb") as mounts:
        return any(line.split()[4] == target for line in mounts)


def _memory_to_spare() -> bool:
    if os.environ.get("KIOSK_RIG_TMPFS", "auto") in ("0", "no", "off"):
        return False
    meminfo = Path("/proc/meminfo").read_text()
    available = re.search(r"(?m)^MemAvailable:\s*(\d+)", meminfo)
    return available is not None and int(available.group(1)) >= TMPFS_MIN_AVAILABLE_KIB


def _write_host(priv: Privileges, path: Path, data: bytes, mode: str = "0644") -> None:
    priv.run(["install", "-m", mode, "/dev/stdin", str(path)], input=data, timeout=30)


def _start_time(pid: int) -> int | None:
    """A process's start time in clock ticks (tells a live PID from a reused one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped: gone for our purposes
        return None
    return int(fields[19])


def _alive(pid: int | None, start: int | None) -> bool:
    return pid is not None and start is not None and _start_time(pid) == start


def sweep_stale(priv: Privileges) -> list[str]:
    """Stop and remove containers whose test run is gone (killed, crashed, timed out).

    A container belongs to the process recorded in its owner.json; while that process
    lives (another engineer's run, say) it is left alone."""
    removed: list[str] = []
    if not MACHINES_DIR.is_dir():
        return removed
    for path in sorted(MACHINES_DIR.glob(MACHINE_PREFIX + "*")):
        try:
            owner = json.loads((path / "owner.json").read_text())
        except (OSError, ValueError):
            owner = {}
        if _alive(owner.get("owner_pid"), owner.get("owner_start")):
            continue
        _stop_container(priv, owner, str(path / "root"))
        _remove_machine_dir(priv, path)
        removed.append(path.name)
    return removed


def _stop_container(priv: Privileges, owner: dict[str, int | None], root: str,
                    running: Callable[[], bool] | None = None) -> None:
    """End a container and everything in it, by the PIDs in its owner record.

    1. Our commands still inside (`nsenter`, e.g. of a test killed mid-command): killed
       first. Left alone they stop themselves when the shutting-down container stops their
       child (nsenter mirrors a stopped child), never reap it, and the container's shutdown
       waits 90 s for that zombie.
    2. nspawn: SIGTERM asks the container to power off; SIGKILL if that takes too long.
    3. The container's PID 1, if it outlived nspawn: SIGKILL ends its PID namespace, and
       so every process in it.
    """
    pid1, pid1_start = owner.get("pid1"), owner.get("pid1_start")
    if _alive(pid1, pid1_start):
        for pid in _nsenters_into(int(pid1)):  # type: ignore[arg-type]
            priv.kill(pid, signal.SIGKILL)
    nspawn, nspawn_start = owner.get("nspawn_pid"), owner.get("nspawn_start")
    if nspawn is not None and _is_nspawn_of(nspawn, root):
        alive = running or (lambda: _alive(nspawn, nspawn_start))
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
            if not alive():
                break
            priv.kill(nspawn, sig)
            _wait_gone(alive, wait_s)
    if _alive(pid1, pid1_start):
        priv.kill(int(pid1), signal.SIGKILL)  # type: ignore[arg-type]
        _wait_gone(lambda: _alive(pid1, pid1_start), 10.0)


def _wait_gone(alive: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)


def _is_nspawn_of(pid: int, root: str) -> bool:
    """Whether PID is a systemd-nspawn running `root` (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and b"systemd-nspawn" in cmdline[0] and root.encode() in cmdline


def _nsenters_into(pid1: int) -> list[int]:
    """Host processes `nsenter --target PID1 ...` (commands the rig runs inside)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = entry.read_bytes().split(b"\0")
            if (argv and argv[0].endswith(b"nsenter") and b"--target" in argv
                    and argv[argv.index(b"--target") + 1:][:1] == [str(pid1).encode()]):
                found.append(int(entry.parent.name))
    return found


@dataclass
class Result:
    """A finished command inside the container."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Result:
        if self.returncode != 0:
            raise RigError(f"in the container, {' '.join(self.argv)!r} exited "
                           f"{self.returncode}:\n--- stdout\n{_tail(self.stdout)}\n"
                           f"--- stderr\n{_tail(self.stderr)}")
        return self


class Container:
    """One booted container: a fresh copy of the pristine root with systemd as PID 1."""

    def __init__(self, priv: Privileges, path: Path):
        self.priv = priv
        self.path = path
        self.root = path / "root"
        self.name = path.name
        self.nspawn_pid: int | None = None
        self.nspawn_start: int | None = None
        self.pid1: int | None = None
        self.pid1_start: int | None = None
        self._launcher: subprocess.Popen[bytes] | None = None

    # lifecycle --------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def boot(cls, priv: Privileges, tarball: Path) -> Iterator[Container]:
        """Extract, boot and yield a container; stop and remove it whatever happens."""
        box = cls(priv, _new_machine_dir(priv, "run"))
        try:
            box._extract(tarball)
            box._start()
            box._wait_running()
            yield box
        finally:
            box.destroy()

    def _extract(self, tarball: Path) -> None:
        _make_root(self.priv, self.root)
        self.priv.run(["tar", "-C", str(self.root), "--numeric-owner", "--xattrs",
                       "-I", "zstd -T0", "-xf", str(tarball)], timeout=300)

    def _start(self) -> None:
        pidfile = self.path / "nspawn.pid"
        console = self.path / "console.log"
        # The shell records its PID, then becomes nspawn: the PID we will stop later is
        # nspawn's own (not a sudo in front of it).
        script = ('echo $$ >"$1"; shift; exec "$@" </dev/null >"$0" 2>&1')
        argv = ["sh", "-c", script, str(console), str(pidfile),
                "systemd-nspawn", "-D", str(self.root), "-M", self.name, "-b",
                "--register=no", "--keep-unit", "--console=read-only",
                "--resolv-conf=copy-host",  # the host's DNS (systemd 252 has no plain "copy")
                # Without it nspawn's seccomp filter refuses bpf(), and the kiosk unit's
                # DevicePolicy=/DeviceAllow= would silently not be enforced.
                "--system-call-filter=bpf"]
        # It runs until destroy() ends it by PID; the handle only reaps it afterwards.
        # Pure cgroup v2 inside, like Raspberry Pi OS Bookworm (the host may be hybrid).
        self._launcher = subprocess.Popen(
            self.priv.cmd(["env", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1", *argv]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while self.nspawn_pid is None:
            with contextlib.suppress(OSError, ValueError):
                self.nspawn_pid = int(pidfile.read_text().strip())
            if self.nspawn_pid is None:
                if time.monotonic() > deadline:
                    raise RigError("systemd-nspawn did not start")
                time.sleep(0.05)
        self.nspawn_start = _start_time(self.nspawn_pid)
        self._record_owner()

    def _owner(self) -> dict[str, int | None]:
        return {"owner_pid": os.getpid(), "owner_start": _start_time(os.getpid()),
                "nspawn_pid": self.nspawn_pid, "nspawn_start": self.nspawn_start,
                "pid1": self.pid1, "pid1_start": self.pid1_start}

    def _record_owner(self) -> None:
        """What a later sweep needs to stop this container if this process dies."""
        _write_host(self.priv, self.path / "owner.json", json.dumps(self._owner()).encode())

    def _find_pid1(self) -> int | None:
        """The container's PID 1: nspawn's child whose PID inside its namespace is 1."""
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError):
                text = status.read_text()
                ppid = re.search(r"(?m)^PPid:\s*(\d+)", text)
                nspid = re.search(r"(?m)^NSpid:\s*([\d\s]+)$", text)
                if (ppid and int(ppid.group(1)) == self.nspawn_pid and nspid
                        and nspid.group(1).split()[-1] == "1"
                        and len(nspid.group(1).split()) > 1):
                    return int(status.parent.name)
        return None

    def _wait_running(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            if not self.running():
                raise RigError(f"the container stopped while booting:\n{self.console()}")
            if self.pid1 is None:
                self.pid1 = self._find_pid1()
                if self.pid1 is not None:
                    self.pid1_start = _start_time(self.pid1)
                    self._record_owner()
            if self.pid1 is not None:
                state = self.run(["systemctl", "is-system-running"], timeout=15).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.1)
        raise RigError(f"the container's systemd did not finish booting within "
                       f"{BOOT_TIMEOUT_S:g} s (last state {state!r}):\n{self.console()}")

    def console(self) -> str:
        """The container's console output so far (boot messages), for error reports."""
        result = self.priv.run(["tail", "-n", "40", str(self.path / "console.log")],
                               timeout=30, check=False)
        return _tail(result.stdout, 40)

    def running(self) -> bool:
        """Whether nspawn (and so the container) still runs."""
        if self._launcher is not None:
            self._launcher.poll()  # reap it if it has exited
        return _alive(self.nspawn_pid, self.nspawn_start)

    def destroy(self) -> None:
        """Stop the container and what runs in it by PID, then remove its directory."""
        if self.nspawn_pid is not None:
            _stop_container(self.priv, self._owner(), str(self.root), self.running)
        if self.nspawn_pid is not None and self.running():
            raise RigError(f"systemd-nspawn (PID {self.nspawn_pid}) did not stop; "
                           f"{self.path} is left in place")
        _remove_machine_dir(self.priv, self.path)

    # commands inside --------------------------------------------------------------------------

    def argv(self, cmd: Sequence[str], *, user: str | None = None,
             env: dict[str, str] | None = None, cwd: str | None = None) -> list[str]:
        """The host command line that runs `cmd` inside, as root or as `user` with a login
        environment (never the host's environment: no venv, proxy or pip settings leak)."""
        if self.pid1 is None:
            raise RigError("the container is not running")
        home = "/root" if user in (None, "root") else f"/home/{user}"
        base = {"PATH": CONTAINER_PATH if user in (None, "root") else USER_PATH,
                "HOME": home, "LANG": "C.UTF-8", "TERM": "dumb",
                "USER": user or "root", "LOGNAME": user or "root"}
        envs = [f"{k}={v}" for k, v in {**base, **(env or {})}.items()]
        inner = ["env", "-i", *envs, *cmd]
        if cwd:
            inner = ["env", "-C", cwd, *inner]
        if user not in (None, "root"):
            inner = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                     *inner]
        return self.priv.cmd(["nsenter", "--target", str(self.pid1), "--all", *inner])

    def run(self, cmd: Sequence[str], *, timeout: float = 60, user: str | None = None,
            input: str | bytes | None = None, env: dict[str, str] | None = None,
            cwd: str | None = None, check: bool = False) -> Result:
        """Run a command inside and wait for it (killing it at the timeout)."""
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.Popen(self.argv(cmd, user=user, env=env, cwd=cwd),
                                stdin=subprocess.PIPE if data is not None else
                                subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_command(proc)
            out, err = proc.communicate()
            raise RigError(f"in the container, {' '.join(cmd)!r} did not finish within "
                           f"{timeout:g} s:\n--- stdout\n{_tail(out)}\n--- stderr\n"
                           f"{_tail(err)}") from None
        except BaseException:  # a test's timeout or Ctrl-C: leave nothing running inside
            self.kill_command(proc)
            proc.wait(timeout=30)
            raise
        result = Result(list(cmd), proc.returncode, out.decode(errors="replace"),
                        err.decode(errors="replace"))
        return result.check() if check else result

    def sh(self, script: str, **kwargs: object) -> Result:
        """A shell script inside (bash -c)."""
        return self.run(["bash", "-c", script], **kwargs)  # type: ignore[arg-type]

    def popen(self, cmd: Sequence[str], *, user: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a command inside without waiting; stop it with `stop_popen`."""
        return subprocess.Popen(self.argv(cmd, user=user, env=env),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)

    def kill_command(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill a command started by `run` or `popen`, and what it started inside (all in
        its own process group)."""
        if self.priv.is_root:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            subprocess.run(self.priv.cmd(["kill", "-KILL", "--", f"-{proc.pid}"]),
                           capture_output=True, timeout=30)

    # files ------------------------------------------------------------------------------------

    def write(self, path: str, data: str | bytes, *, mode: str = "0644",
              owner: str = "root", group: str | None = None) -> None:
        """Create or replace a file inside (parents created), like `install -D`."""
        raw = data.encode() if isinstance(data, str) else data
        self.run(["install", "-D", "-m", mode, "-o", owner, "-g", group or owner,
                  "/dev/stdin", path], input=raw, check=True)

    def read(self, path: str) -> str:
        return self.run(["cat", path], check=True).stdout

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path]).returncode == 0

    def copy_tree(self, files: dict[str, Path], dest: str, *, owner: str) -> None:
        """Copy host files into `dest` inside, owned by `owner` (as a user's own unpacked
        checkout would be). `files` maps relative paths to host paths."""
        uid, gid = self.run(["sh", "-c", f"id -u {owner}; id -g {owner}"],
                            check=True).stdout.split()
        buf = io.BytesIO()
        dirs = sorted({str(parent) for rel in files for parent in Path(rel).parents
                       if str(parent) != "."})
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for rel in dirs:
                info = tarfile.TarInfo(rel)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                info.uid, info.gid, info.uname, info.gname = int(uid), int(gid), owner, owner
                tar.addfile(info)
            for rel, src in sorted(files.items()):
                info = tar.gettarinfo(str(src), arcname=rel)
                info.uid, info.gid, info.uname, info.gname = int(uid), int(gid), owner, owner
                if info.isfile():
                    with open(src, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
        self.run(["install", "-d", "-o", owner, "-g", owner, dest], check=True)
        self.run(["tar", "-C", dest, "--same-owner", "-xf", "-"], input=buf.getvalue(),
                 check=True, timeout=120)


def checkout_files(top: Path = REPO) -> dict[str, Path]:
    """The files of this checkout as a user has them: what git tracks plus new files it
    does not ignore (no .git, no .venv, no caches). Without git, the tree minus those."""
    skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
            "build", "dist"}
    names: list[str]
    try:
        listed = subprocess.run(["git", "-C", str(top), "ls-files", "-z", "-co",
                                 "--exclude-standard"], capture_output=True, timeout=60,
                                check=True).stdout
        names = [n for n in listed.decode().split("\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = [str(p.relative_to(top)) for p in top.rglob("*")
                 if p.is_file() and not skip.intersection(p.relative_to(top).parts)]
    return {name: top / name for name in names
            if (top / name).is_file() and not (top / name).is_symlink()}

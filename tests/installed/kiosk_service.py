"""The installed kiosk as IT staff and a patient reach it, from outside the container.

Every helper goes through the container's own tools (systemctl, journalctl, pactl, a
socket in the state directory), never through the daemon's internals: what a test sees here
is what a hospital would see on the Pi.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from tests.installed.rig import REPO, Container, Result, RigError, checkout_files

UNIT = "voice-kiosk"
SERVICE = "voice-kiosk.service"
CONFIG = "/etc/voice-kiosk/config.yaml"
KEY_FILE = "/etc/voice-kiosk/gateway-api-key"
CHECKOUT = "/home/pi/voice-kiosk"
VENV_PYTHON = "/opt/voice-kiosk/venv/bin/python"
STATES = ("idle", "connecting", "listening", "thinking", "speaking", "error")
KIOSK_ID = "ward3-bed12"  # what the tests name the kiosk once a gateway is configured

# The test rig inside the container (none of it is part of the kiosk or its unit).
RIG_FILES = Path(__file__).resolve().parent / "container"
RIG_DIR = "/run/voice-kiosk-rig"
PINS_DIR = "/opt/voice-kiosk-rig/pins"  # tests/rig/pins, copied in
PINS_SOCKET = "/var/lib/voice-kiosk/rig-pins.sock"  # in the unit's writable StateDirectory
PINS_DROPIN = "/etc/systemd/system/voice-kiosk.service.d/rig-pins.conf"
BUTTON_PIN, LED_PIN = 17, 18  # the example configuration's pins
GATEWAY_UNIT = "rig-gateway"
GATEWAY_PORT = 8780  # and 8781 for its realtime side; a fresh container has both free
GATEWAY_KEY = f"{RIG_DIR}/gateway-api-key"  # written by the simulator once it listens
SIM_F0_HZ = 220.0  # the simulator's answer voice (python -m kiosk.sim --f0-hz default)

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str,
               interval_s: float = 0.1, *, show: Callable[[], object] | None = None) -> T:
    """Poll `probe` until it returns something truthy; fail saying what did not happen
    (and what `show` says about the situation then)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    seen = show() if show else last
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} "
                         f"(last seen: {seen!r})")


def when(value: T, condition: bool) -> T | None:
    """`value` if `condition` holds, else None: for probes of `wait_until`."""
    return value if condition else None


# -- as a user on the Pi -----------------------------------------------------------------------


def copy_checkout(box: Container) -> None:
    """The checkout, unpacked in pi's home and owned by pi (no .git, no .venv)."""
    box.copy_tree(checkout_files(REPO), CHECKOUT, owner="pi")


def as_pi(box: Container, script: str, timeout: float) -> Result:
    """A shell command typed by `pi` in the checkout (pi has passwordless sudo)."""
    return box.run(["bash", "-c", script], user="pi", cwd=CHECKOUT, timeout=timeout)


def install_sh(box: Container, timeout: float = 600) -> Result:
    """The README's install command, as pi: `sudo bash systemd/install.sh`."""
    return as_pi(box, "sudo bash systemd/install.sh", timeout=timeout)


# -- the test rig: sound server, pins, gateway ---------------------------------------------------


def setup_rig_audio(box: Container) -> None:
    """A system-wide PulseAudio with a speaker sink and a microphone feed, made ALSA's
    default (the container has no sound card). The kiosk's unit and config stay as
    installed; their `default` device reaches it through /etc/asound.conf."""
    box.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "pulseaudio",
             "pulseaudio-utils", "libasound2-plugins", "alsa-utils"],
            env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300, check=True)
    box.write("/etc/systemd/system/rig-pulseaudio.service",
              (RIG_FILES / "rig-pulseaudio.service").read_text())
    box.write("/etc/voice-kiosk-rig/devices.pa", (RIG_FILES / "devices.pa").read_text())
    box.write("/etc/asound.conf", (RIG_FILES / "asound.conf").read_text())
    box.write("/etc/pulse/client.conf.d/00-voice-kiosk-rig.conf",
              (RIG_FILES / "pulse-client.conf").read_text())
    box.run(["systemctl", "daemon-reload"], check=True)
    box.run(["systemctl", "enable", "--now", "rig-pulseaudio.service"], check=True)
    wait_until(lambda: box.run(["pactl", "info"]).returncode == 0, 30,
               "the rig's PulseAudio to answer")
    box.run(["install", "-d", "-m", "0700", RIG_DIR], check=True)


def setup_rig_pins(box: Container) -> None:
    """The test pin factory (tests/rig/pins), chosen through gpiozero's own `auto`
    resolution: the example config keeps `gpio.pin_factory: auto`; a drop-in names the
    factory and where its control socket goes."""
    pins = REPO / "tests/rig/pins"
    files = {str(p.relative_to(pins)): p for p in pins.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    box.copy_tree(files, PINS_DIR, owner="root")
    box.write(PINS_DROPIN,
              "# Test rig only: gpiozero's `auto` resolves to the test pin factory.\n"
              "[Service]\n"
              f"Environment=PYTHONPATH={PINS_DIR} GPIOZERO_PIN_FACTORY=kiosk-rig "
              f"KIOSK_RIG_PINS_SOCKET={PINS_SOCKET}\n")
    box.run(["systemctl", "daemon-reload"], check=True)


def start_gateway(box: Container, python: str = VENV_PYTHON) -> dict[str, str]:
    """The built-in simulator as the hospital's gateway: a separate process on the
    container's loopback at fixed ports, started like any other service, by `python` (the
    installed kiosk's, or a copy's: see `rig_kiosk_copy`). Returns its URL and an API key
    it accepts (which it writes once it listens)."""
    box.run(["install", "-d", "-m", "0700", RIG_DIR], check=True)
    box.run(["rm", "-f", GATEWAY_KEY], check=True)
    box.run(["systemd-run", f"--unit={GATEWAY_UNIT}", "--property=Type=exec",
             "--description=Simulated voice gateway (voice-kiosk test rig)", python,
             "-m", "kiosk.sim", "--gateway-port", str(GATEWAY_PORT), "--realtime-port",
             str(GATEWAY_PORT + 1), "--api-key-file", GATEWAY_KEY], check=True)
    wait_until(lambda: box.exists(GATEWAY_KEY), 30, "the simulated gateway to listen")
    return {"gateway_url": f"http://127.0.0.1:{GATEWAY_PORT}",
            "api_key": box.read(GATEWAY_KEY).strip()}


def rig_kiosk_copy(box: Container, deb: str, dest: str = "/opt/voice-kiosk-rig/kiosk") -> str:
    """The kiosk's virtual environment unpacked from a .deb already in the container into
    `dest`, not installed: the test rig's own copy, to run the simulated gateway before (or
    without) the package under test. Returns its interpreter."""
    box.run(["rm", "-rf", dest], check=True)
    box.run(["dpkg-deb", "-x", deb, dest], check=True, timeout=120)
    # A virtual environment runs from anywhere through its own interpreter (pyvenv.cfg).
    return f"{dest}{VENV_PYTHON}"


def install_key(box: Container, key: str) -> None:
    """The README's steps for a gateway key: a root-only file (then install.sh again)."""
    box.run(["install", "-m", "0600", "-o", "root", "-g", "root", "/dev/null", KEY_FILE],
            check=True)
    box.run(["sh", "-c", f"printf '%s' \"$1\" > {KEY_FILE}", "sh", key], check=True)


# -- the service ---------------------------------------------------------------------------------


@dataclass
class Entry:
    """One journal entry (the fields a test looks at)."""

    fields: dict[str, Any]

    @property
    def message(self) -> str:
        value = self.fields.get("MESSAGE", "")
        return value if isinstance(value, str) else ""

    @property
    def from_kiosk(self) -> bool:
        """Logged by the kiosk process itself (not systemd about the unit)."""
        return self.fields.get("_SYSTEMD_UNIT") == SERVICE and "_PID" in self.fields \
            and self.fields.get("_COMM") != "systemd"

    @property
    def state_change(self) -> str | None:
        match = re.match(r"state (\w+) \(was \w+\)", self.message)
        return match.group(1) if match and self.from_kiosk else None


class Service:
    """voice-kiosk.service inside the container, through systemctl and journalctl."""

    def __init__(self, box: Container):
        self.box = box

    # systemctl -------------------------------------------------------------------------------

    def systemctl(self, *args: str, timeout: float = 90) -> Result:
        return self.box.run(["systemctl", *args], timeout=timeout)

    def show(self, *props: str) -> dict[str, str]:
        out = self.systemctl("show", SERVICE, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_show(self, what: str, predicate: Callable[[dict[str, str]], bool], *props: str,
                  timeout_s: float = 30) -> dict[str, str]:
        """Poll `systemctl show` until its `props` satisfy `predicate`; returns them."""
        return wait_until(lambda: when(p := self.show(*props), predicate(p)), timeout_s, what)

    def status_text(self) -> str:
        return self.show("StatusText")["StatusText"]

    def state_word(self) -> str:
        """The first word of STATUS=, which the README promises is the kiosk's state."""
        text = self.status_text()
        return text.split(None, 1)[0] if text else ""

    def wait_active(self, timeout_s: float = 60) -> dict[str, str]:
        """Wait until the unit is active (READY=1 came: Type=notify) with a STATUS=."""
        def probe() -> dict[str, str] | None:
            props = self.show("ActiveState", "SubState", "StatusText", "MainPID")
            if props["ActiveState"] == "failed":
                raise AssertionError(f"{SERVICE} failed: {props}\n{self.journal_tail()}")
            if props["ActiveState"] == "active" and props["StatusText"]:
                return props
            return None
        return wait_until(probe, timeout_s, f"{SERVICE} to be active with a status")

    def press(self) -> None:
        """A remote short press, as the README tells IT staff: SIGUSR1."""
        self.systemctl("kill", "-s", "USR1", UNIT).check()

    def reload(self) -> None:
        self.systemctl("reload", UNIT).check()

    def restart(self) -> Result:
        return self.systemctl("restart", UNIT)

    # journal ---------------------------------------------------------------------------------

    def cursor(self) -> str:
        """A journal position: later waits only look at what came after it."""
        out = self.box.run(["journalctl", "-o", "json", "-n", "1", "--no-pager"],
                           check=True).stdout
        return json.loads(out.splitlines()[-1])["__CURSOR"]

    def entries(self, after: str | None = None, *, unit: bool = True) -> list[Entry]:
        cmd = ["journalctl", "-o", "json", "--no-pager"]
        if unit:
            cmd += ["-u", UNIT]
        if after:
            cmd += [f"--after-cursor={after}"]
        out = self.box.run(cmd, timeout=60, check=True).stdout
        return [Entry(json.loads(line)) for line in out.splitlines() if line.startswith("{")]

    def wait_entry(self, predicate: Callable[[Entry], bool], after: str, timeout_s: float,
                   what: str) -> Entry:
        def probe() -> Entry | None:
            return next((e for e in self.entries(after) if predicate(e)), None)
        return wait_until(probe, timeout_s, what, interval_s=0.2)

    def wait_message(self, pattern: str, after: str, timeout_s: float = 30) -> Entry:
        rx = re.compile(pattern)
        return self.wait_entry(lambda e: bool(rx.search(e.message)), after, timeout_s,
                               f"a journal line matching {pattern!r}")

    def states(self, after: str) -> list[str]:
        """The states the kiosk went through since `after`, from its own log lines."""
        return [s for e in self.entries(after) if (s := e.state_change)]

    def wait_state(self, state: str, after: str, timeout_s: float = 30) -> list[str]:
        """Wait until the kiosk logs a change into `state`; the states seen so far."""
        return wait_until(lambda: when(seen := self.states(after), state in seen),
                          timeout_s, f"the kiosk to enter {state!r}", interval_s=0.2)

    def selfcheck(self) -> list[str]:
        """The self-check lines the running service logged at its start (this invocation
        only; READY=1 comes after them)."""
        invocation = self.show("InvocationID")["InvocationID"]
        return [e.message for e in self.entries()
                if e.fields.get("_SYSTEMD_INVOCATION_ID") == invocation and e.from_kiosk
                and e.message.startswith("self-check: ")]

    def journal_tail(self, lines: int = 40) -> str:
        return self.box.run(["journalctl", "-u", UNIT, "-n", str(lines), "--no-pager"]).stdout

    # configuration ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.box.read(CONFIG)) or {}

    def write_config(self, settings: dict[str, Any] | str) -> None:
        """Replace config.yaml, keeping its owner and mode (root:voice-kiosk 0640)."""
        text = settings if isinstance(settings, str) else yaml.safe_dump(settings,
                                                                          sort_keys=False)
        self.box.write(CONFIG, text, mode="0640", owner="root", group="voice-kiosk")

    def edit_config(self, **sections: dict[str, Any]) -> dict[str, Any]:
        """Change some keys (section by section), as IT staff would in an editor."""
        settings = self.config()
        for name, values in sections.items():
            settings.setdefault(name, {})
            settings[name].update(values)
        self.write_config(settings)
        return settings

    # the test pins ---------------------------------------------------------------------------

    def pins(self, request: str) -> str:
        """One request to the test pin factory's control socket (see tests/rig/pins)."""
        client = ("import socket, sys\n"
                  "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
                  "s.sendall(sys.argv[2].encode() + b'\\n')\n"
                  "print(s.makefile().readline().strip())\n")
        result = self.box.run(["python3", "-c", client, PINS_SOCKET, request], timeout=30)
        if result.returncode != 0:
            raise RigError(f"pin socket {PINS_SOCKET}: {result.stderr.strip()}")
        return result.stdout.strip()

    def pin_value(self, pin: int) -> float | None:
        """A pin's current value, or None while the socket or the pin is not there."""
        try:
            answer = self.pins(f"get {pin}")
        except RigError:
            return None
        return float(answer.split()[2]) if answer.startswith("ok ") else None

    def pin_history(self, pin: int, window_s: float) -> list[tuple[float, float]]:
        """The pin's changes within the last `window_s` seconds (relative times)."""
        answer = self.pins(f"history {pin}")
        if not answer.startswith("ok "):
            raise AssertionError(f"pin {pin}: {answer}")
        now, *changes = answer.split()[1:]
        out = []
        for change in changes:
            t, value = change.split("=")
            if float(now) - float(t) <= window_s:
                out.append((float(t) - float(now), float(value)))
        return out


# -- sound in and out ----------------------------------------------------------------------------


def wav_bytes(pcm: np.ndarray, rate: int = 24000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())
    return buf.getvalue()


def say(box: Container, pcm: np.ndarray, timeout_s: float = 30) -> None:
    """Play 24 kHz int16 audio into the kiosk's microphone (the rig's `micfeed` sink) and
    wait until it has been played."""
    box.write("/var/tmp/rig-speech.wav", wav_bytes(pcm))
    box.run(["paplay", "--device=micfeed", "/var/tmp/rig-speech.wav"], timeout=timeout_s,
            check=True)


@contextmanager
def record_speaker(box: Container) -> Iterator[list[np.ndarray]]:
    """Record what the kiosk plays (the rig's speaker sink monitor) at 24 kHz mono while
    the block runs; the yielded list holds the samples afterwards."""
    pidfile = f"{RIG_DIR}/parec.pid"
    proc = box.popen(["sh", "-c", f'echo $$ > {pidfile}; exec parec --device=speaker.monitor '
                      f'--rate=24000 --channels=1 --format=s16le --latency-msec=20'])
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(
        lambda: proc.stdout.read1(65536), b"")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    out: list[np.ndarray] = []
    try:
        wait_until(lambda: box.exists(pidfile), 10, "the speaker recorder to start")
        wait_until(lambda: chunks, 10, "the first recorded audio")
        yield out
    finally:
        box.run(["sh", "-c", f'kill -INT "$(cat {pidfile})"; rm -f {pidfile}'])
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            box.kill_command(proc)
            proc.wait(timeout=10)
        reader.join(10)
        data = b"".join(chunks)
        out.append(np.frombuffer(data[: len(data) // 2 * 2], dtype=np.int16))


@dataclass
class Heard:
    """What a recording holds: its loudest level and how long a tone near `f0` dominated."""

    peak_dbfs: float
    tone_s: float
    frames: list[tuple[float, float]]  # (dBFS, dominant Hz) per 100 ms of sound


def analyse(pcm: np.ndarray, f0_hz: float, rate: int = 24000) -> Heard:
    """Split into 100 ms frames; for each frame louder than -50 dBFS, find the dominant
    frequency (60-2000 Hz, Hann window). The answer is heard if frames dominated by `f0_hz`
    (within 5 %) add up to about its length; the kiosk's cues are 330-1320 Hz tones."""
    x = pcm.astype(np.float64) / 32768.0
    n = rate // 10
    frames = []
    tone = 0
    freqs = np.fft.rfftfreq(n, 1 / rate)
    band = (freqs >= 60) & (freqs <= 2000)
    window = np.hanning(n)
    for i in range(0, len(x) - n + 1, n):
        frame = x[i:i + n]
        rms = float(np.sqrt(np.mean(frame ** 2)))
        db = 20 * np.log10(rms) if rms > 0 else -120.0
        if db < -50:
            continue
        spectrum = np.abs(np.fft.rfft(frame * window))
        hz = float(freqs[band][np.argmax(spectrum[band])])
        frames.append((round(float(db), 1), round(hz, 1)))
        if abs(hz - f0_hz) <= 0.05 * f0_hz:
            tone += 1
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return Heard(20 * np.log10(peak) if peak > 0 else -120.0, tone / 10, frames)

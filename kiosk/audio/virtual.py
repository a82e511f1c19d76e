"""VirtualAudio: a private sound rig for tests and `voice-kiosk demo --virtual-audio`.

It starts its own PulseAudio daemon (own runtime dir and HOME in a temp dir, anonymous unix
socket) with null sinks, and an ALSA configuration in that HOME that names them, so
PortAudio lists real, selectable devices:

* ``kiosk_mic``     -- the kiosk's microphone: the monitor of the ``micfeed`` sink; whatever
  `play_into_mic()` plays into ``micfeed`` is what the kiosk hears.
* ``kiosk_speaker`` -- the kiosk's speaker: the ``spk`` sink; `record_speaker()` records its
  monitor.
* ``system``        -- (after `start_jack()`) a JACK dummy device that only runs at 48000 Hz,
  to exercise resampling; `play_into_jack_mic()` feeds the kiosk's JACK input.

Configure the kiosk with ``AudioSettings(input_device="kiosk_mic",
output_device="kiosk_speaker")`` after `apply_to_process()` (or pass `env` to a subprocess).

Unplugging is simulated by unloading a null sink. PulseAudio then *moves* the kiosk's stream
to the default device instead of failing it; the rig makes that default a suspended sink
(``kiosk_void``), so the moved stream stops moving data -- the kiosk's callbacks stop, exactly
what a USB unplug looks like to it. While the sink is gone, opening ``kiosk_mic`` fails; after
`restore_mic()` it opens again.

Example::

    with VirtualAudio() as rig:
        rig.apply_to_process()
        rec = rig.record_speaker()
        rig.play_into_mic(tone, 24000).wait(5)
        audio = rec.stop()      # int16 at 24 kHz
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from kiosk.settings import AudioSettings

MIC_DEVICE = "kiosk_mic"
SPEAKER_DEVICE = "kiosk_speaker"
JACK_DEVICE = "system"
_SINK_RATE_HZ = 48000

_ASOUNDRC = """\
# Written by kiosk.audio.virtual: ALSA names for the rig's PulseAudio null sinks.
pcm.kiosk_mic {
  type pulse
  device "micfeed.monitor"
  hint { show on description "voice-kiosk virtual microphone" }
}
pcm.kiosk_speaker {
  type pulse
  device "spk"
  hint { show on description "voice-kiosk virtual speaker" }
}
pcm.kiosk_jack_feed {
  type plug
  slave.pcm { type jack; playback_ports { 0 "PortAudio:in_0" } }
}
"""


class RigError(RuntimeError):
    """The virtual rig could not start (missing pulseaudio, pactl, jackd...)."""


class Feed:
    """A sound being played into the virtual microphone; `wait()` for its end."""

    def __init__(self, proc: subprocess.Popen, pcm: bytes) -> None:
        self._proc = proc
        self._writer = threading.Thread(target=self._write, args=(pcm,), daemon=True)
        self._writer.start()

    def _write(self, pcm: bytes) -> None:
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(pcm)
            self._proc.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass  # stopped early

    def wait(self, timeout_s: float) -> bool:
        """True when the whole sound was played out within `timeout_s`."""
        try:
            return self._proc.wait(timeout_s) == 0
        except subprocess.TimeoutExpired:
            return False

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)


class Recorder:
    """Records the virtual speaker at 24 kHz mono; `stop()` returns the samples."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self._chunks: list[bytes] = []
        self._first = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        while True:
            chunk = self._proc.stdout.read1(4800)  # type: ignore[attr-defined]  # BufferedReader
            if not chunk:
                return
            self._chunks.append(chunk)
            self._first.set()

    def wait_ready(self, timeout_s: float = 5.0) -> bool:
        """True once audio (silence included) is flowing from the speaker's monitor."""
        return self._first.wait(timeout_s)

    def samples(self) -> np.ndarray:
        """What was recorded so far (int16, 24 kHz)."""
        data = b"".join(self._chunks)
        return np.frombuffer(data[:len(data) // 2 * 2], dtype=np.int16).copy()

    def stop(self) -> np.ndarray:
        """Stop recording; everything recorded as int16 at 24 kHz."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._reader.join(5)
        return self.samples()


class VirtualAudio:
    """A private PulseAudio (and optionally JACK) sound rig; see the module doc."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._modules: dict[str, str] = {}
        self._jack: subprocess.Popen | None = None
        self._procs: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}
        """Environment for processes that should use the rig (merge into os.environ)."""

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> VirtualAudio:
        """Start PulseAudio with the null sinks; returns self. Raises RigError."""
        for tool in ("pulseaudio", "pactl", "pacat"):
            if shutil.which(tool) is None:
                raise RigError(f"{tool} not found: install pulseaudio and pulseaudio-utils")
        d = Path(tempfile.mkdtemp(prefix="kiosk-rig-"))
        self._dir = d
        run, home = d / "run", d / "home"
        run.mkdir(mode=0o700)
        home.mkdir()
        (home / ".asoundrc").write_text(_ASOUNDRC)
        self.env = {
            "XDG_RUNTIME_DIR": str(run),
            "HOME": str(home),
            "PULSE_SERVER": f"unix:{run}/pulse/native",
            # "default"/"pulse" devices of processes using the rig reach the null sinks too.
            "PULSE_SINK": "spk",
            "PULSE_SOURCE": "micfeed.monitor",
            "JACK_DEFAULT_SERVER": f"kiosk-rig-{os.getpid()}-{d.name[-8:]}",
            "JACK_NO_START_SERVER": "1",
            "JACK_NO_AUDIO_RESERVATION": "1",
        }
        cmd = ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit",
               "-n", "--use-pid-file=yes", f"--log-target=file:{run}/pulse.log",
               "--load=module-native-protocol-unix auth-anonymous=1",
               # Orphaned streams are moved to the default sink/source: a suspended one,
               # so a removed device really stops delivering (see the module doc).
               "--load=module-null-sink sink_name=kiosk_void rate=48000 channels=1 "
               "norewinds=1"]
        proc = subprocess.run(cmd, env=self._child_env(), capture_output=True, text=True,
                              timeout=30)
        if proc.returncode != 0:
            self.stop()
            raise RigError(f"pulseaudio did not start: {proc.stderr.strip()}")
        deadline = time.monotonic() + 10
        while self._pactl("info", check=False).returncode != 0:
            if time.monotonic() > deadline:
                self.stop()
                raise RigError(f"pulseaudio did not answer; see {run}/pulse.log")
            time.sleep(0.05)
        self._pactl("suspend-sink", "kiosk_void", "1")
        self._pactl("set-default-sink", "kiosk_void")
        self._pactl("set-default-source", "kiosk_void.monitor")
        self.restore_speaker()
        self.restore_mic()
        return self

    def stop(self) -> None:
        """Stop everything the rig started and delete its directory."""
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        self._procs.clear()
        self.stop_jack()
        if self._dir is not None:
            pidfile = self._dir / "run" / "pulse" / "pid"
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                for _ in range(250):  # wait (bounded) until it has exited
                    if not _running(pid):
                        break
                    time.sleep(0.02)
            except (OSError, ValueError, IndexError):
                pass  # gone (or never started)
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> VirtualAudio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def audio_settings(base: AudioSettings | None = None) -> AudioSettings:
        """`base` (or the defaults) with the microphone and speaker pointed at the rig."""
        return dataclasses.replace(base or AudioSettings(), input_device=MIC_DEVICE,
                                   output_device=SPEAKER_DEVICE)

    def apply_to_process(self) -> None:
        """Make this process's PortAudio use the rig. Call before the first PyAudio()."""
        os.environ.update(self.env)

    # -- devices -------------------------------------------------------------------------

    def remove_mic(self) -> None:
        """Unplug the virtual microphone."""
        self._unload("micfeed")

    def restore_mic(self) -> None:
        """Plug the virtual microphone back in."""
        self._load("micfeed", channels=1)

    def remove_speaker(self) -> None:
        """Unplug the virtual speaker."""
        self._unload("spk")

    def restore_speaker(self) -> None:
        """Plug the virtual speaker back in."""
        self._load("spk", channels=2)

    def add_echo(self, latency_ms: int = 20) -> None:
        """Feed the speaker back into the microphone, like a room does (echo tests)."""
        out = self._pactl("load-module", "module-loopback", "source=spk.monitor",
                          "sink=micfeed", f"latency_msec={latency_ms}")
        self._modules["echo"] = out.stdout.strip()

    def remove_echo(self) -> None:
        self._unload("echo")

    # -- sound in and out ----------------------------------------------------------------

    def play_into_mic(self, pcm: np.ndarray | bytes, rate_hz: int = 24000,
                      latency_ms: int = 20) -> Feed:
        """Start playing mono int16 `pcm` into the microphone; returns at once.

        `latency_ms` is pacat's: the sound reaches the microphone about that much later, and
        PulseAudio runs the microphone's sink at a quarter of it while the feed plays (20:
        5 ms, so every recorder is woken ~200 times a second; 200: the sink's own 50 ms, as
        when nobody speaks)."""
        proc = self._spawn(["pacat", "--playback", "--device=micfeed", f"--rate={rate_hz}",
                            "--channels=1", "--format=s16le", "--raw",
                            f"--latency-msec={latency_ms}"], stdin=subprocess.PIPE)
        return Feed(proc, _as_bytes(pcm))

    def record_speaker(self) -> Recorder:
        """Start recording the speaker (24 kHz mono); `stop()` the recorder for the audio."""
        proc = self._spawn(["parec", "--device=spk.monitor", "--rate=24000", "--channels=1",
                            "--format=s16le", "--raw", "--latency-msec=20"],
                           stdout=subprocess.PIPE)
        return Recorder(proc)

    def start_jack(self, rate_hz: int = 48000) -> None:
        """Start a JACK dummy server whose device `system` runs only at `rate_hz`.

        Start it before the kiosk initialises PortAudio (PortAudio looks for JACK only then).
        """
        if shutil.which("jackd") is None:
            raise RigError("jackd not found: install jackd2 for the 48 kHz-only device")
        block = rate_hz // 100
        self._jack = subprocess.Popen(
            ["jackd", "--no-realtime", "-d", "dummy", "-r", str(rate_hz), "-p", str(block),
             "-C", "2", "-P", "2"], env=self._child_env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["jack_lsp"], env=self._child_env(), capture_output=True,
                             timeout=10).returncode != 0:
            if time.monotonic() > deadline or self._jack.poll() is not None:
                self.stop_jack()
                raise RigError("jackd did not start")
            time.sleep(0.05)

    def stop_jack(self) -> None:
        if self._jack is not None:
            self._jack.terminate()
            try:
                self._jack.wait(5)
            except subprocess.TimeoutExpired:
                self._jack.kill()
                self._jack.wait(5)
            self._jack = None

    def play_into_jack_mic(self, pcm: np.ndarray | bytes, rate_hz: int = 48000) -> Feed:
        """Play mono int16 into the kiosk's JACK input port (its stream must be open)."""
        proc = self._spawn(["aplay", "-q", "-D", "kiosk_jack_feed", "-t", "raw", "-f",
                            "S16_LE", "-r", str(rate_hz), "-c", "1"], stdin=subprocess.PIPE)
        return Feed(proc, _as_bytes(pcm))

    # -- helpers -------------------------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def _spawn(self, cmd: list[str], **kw: object) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=self._child_env(), stderr=subprocess.DEVNULL,
                                **kw)  # type: ignore[call-overload]
        self._procs = [p for p in self._procs if p.poll() is None] + [proc]
        return proc

    def _pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["pactl", *args], env=self._child_env(), capture_output=True,
                              text=True, timeout=15)
        if check and proc.returncode != 0:
            raise RigError(f"pactl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def _load(self, sink: str, channels: int) -> None:
        if sink in self._modules:
            return
        out = self._pactl("load-module", "module-null-sink", f"sink_name={sink}",
                          f"rate={_SINK_RATE_HZ}", f"channels={channels}", "norewinds=1")
        self._modules[sink] = out.stdout.strip()

    def _unload(self, name: str) -> None:
        module = self._modules.pop(name, None)
        if module is not None:
            self._pactl("unload-module", module)


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a daemon's parent may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _as_bytes(pcm: np.ndarray | bytes) -> bytes:
    return pcm if isinstance(pcm, bytes) else np.asarray(pcm, dtype="<i2").tobytes()

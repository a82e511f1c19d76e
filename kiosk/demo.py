"""`voice-kiosk demo`: watch the whole kiosk work on any Linux machine.

Runs the real pipeline (controller, audio engine, realtime session, LED on mock pins) against
the built-in simulator on loopback. Without a sound device (or with --virtual-audio) it starts
its own PulseAudio virtual devices, speaks a sample question into the virtual microphone once
the kiosk listens, and records the kiosk's answer to a WAV file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import wave
from dataclasses import replace
from typing import Any

import numpy as np

from kiosk import config
from kiosk import events as ev
from kiosk.settings import SIMULATOR_URL, LoggingSettings, Settings
from kiosk.states import State, StateChange

QUESTION = "Hello. Could I have a glass of water, please?"
SCRIPT_STEP_TIMEOUT_S = 20.0


class Timeline:
    """Observer that remembers every state change, and lets the demo wait for one."""

    def __init__(self) -> None:
        self.changes: list[StateChange] = []
        self._cond = threading.Condition()
        self.on_press: Any = None  # called (off the controller thread) when a session starts

    def on_state_change(self, change: StateChange) -> None:
        with self._cond:
            self.changes.append(change)
            self._cond.notify_all()
        if change.new is State.CONNECTING and self.on_press is not None:
            threading.Thread(target=self.on_press, args=(change,), daemon=True).start()

    def wait_for(self, state: State, after: int, timeout_s: float) -> int:
        """Index of the first change into `state` at or after index `after`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for i in range(after, len(self.changes)):
                    if self.changes[i].new is state:
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no `{state}` within {timeout_s:g} s")
                self._cond.wait(left)

    def render(self) -> str:
        if not self.changes:
            return "(no state changes)"
        t0 = self.changes[0].at
        lines = ["", "timeline (ms since the first change, and the step's own duration):"]
        prev = t0
        for c in self.changes:
            lines.append(f"  {1000 * (c.at - t0):8.0f} ms  {c.new.value:<11} "
                         f"(+{1000 * (c.at - prev):.0f} ms)  {c.detail}")
            prev = c.at
        return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    from kiosk.assembly import Kiosk
    from kiosk.hw.terminal import TerminalDisplay
    from kiosk.service.logs import setup_logging
    from kiosk.sim import Simulator

    settings = _demo_settings(args)
    if settings is None:
        return 1
    setup_logging(LoggingSettings(level="warning", target="stderr"), settings.kiosk)
    interactive = not args.script and sys.stdin.isatty()
    rig = None
    with contextlib.ExitStack() as cleanup:
        if args.virtual_audio or not _has_sound_devices():
            rig = _start_rig(cleanup)
            if rig is None:
                return 1
            settings = replace(settings, audio=replace(
                settings.audio, input_device=rig.mic, output_device=rig.speaker))
        sim = Simulator().start()
        cleanup.callback(sim.stop)
        timeline = Timeline()
        kiosk = Kiosk(settings, [TerminalDisplay(), timeline], sim)
        cleanup.callback(kiosk.close)
        recorder = None
        if rig is not None:
            question = _sample_question(rig.env)
            timeline.on_press = lambda change: _speak_after_chime(rig, kiosk, question, change)
            recorder = rig.record_speaker()
            cleanup.callback(_save_answer, recorder, args.answer_wav)
        print(f"voice-kiosk demo: simulator at {sim.gateway_url}, mock GPIO, "
              f"{'virtual' if rig else 'real'} sound devices")
        kiosk.start()
        if interactive:
            print("Enter = short press, l = long press, q = quit")
            _keyboard_loop(kiosk)
            return 0
        return _scripted(kiosk, timeline)
    return 0


def _demo_settings(args: argparse.Namespace) -> Settings | None:
    settings = Settings()
    if args.config:
        try:
            settings = config.load(args.config)
        except config.ConfigError as exc:
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            return None
    # The demo always talks to the simulator and to mock pins: never to a real gateway.
    return replace(settings, gateway=replace(settings.gateway, url=SIMULATOR_URL),
                   gpio=replace(settings.gpio, pin_factory="mock"),
                   visit=replace(settings.visit, idle_timeout_s=max(
                       settings.visit.idle_timeout_s, 10.0)))


def _has_sound_devices() -> bool:
    from kiosk.audio.devices import list_devices

    try:
        devices = list_devices()
    except Exception:  # noqa: BLE001 - no PortAudio at all counts as "no device"
        return False
    return any(d.max_input_channels for d in devices) and any(
        d.max_output_channels for d in devices)


class _Rig:
    """The virtual devices, and the names the kiosk opens them by."""

    def __init__(self, audio: Any, mic: str, speaker: str):
        self.audio, self.mic, self.speaker = audio, mic, speaker
        self.env = audio.env

    def record_speaker(self) -> Any:
        return self.audio.record_speaker()

    def play_into_mic(self, pcm: np.ndarray) -> Any:
        return self.audio.play_into_mic(pcm, 24000)


def _start_rig(cleanup: contextlib.ExitStack) -> _Rig | None:
    from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE, RigError, VirtualAudio

    print("no sound device found (or --virtual-audio): starting virtual PulseAudio devices")
    try:
        audio = VirtualAudio().start()
    except RigError as exc:
        print(f"voice-kiosk demo: cannot start virtual audio: {exc}", file=sys.stderr)
        return None
    cleanup.callback(audio.stop)
    audio.apply_to_process()
    return _Rig(audio, MIC_DEVICE, SPEAKER_DEVICE)


def _sample_question(env: dict[str, str]) -> np.ndarray:
    """The sample question as 24 kHz PCM: spoken by espeak-ng when installed, else a
    synthetic voice-like signal (the simulator's server VAD hears either)."""
    from kiosk.sim import speech_like

    if shutil.which("espeak-ng"):
        try:
            wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout",
                                  QUESTION], capture_output=True, timeout=20, check=True,
                                 env={**os.environ, **env}).stdout
            return _wav_to_24k(wav)
        except (subprocess.SubprocessError, OSError, wave.Error, EOFError):
            pass
    return speech_like(2.0)


def _wav_to_24k(data: bytes) -> np.ndarray:
    import io

    import soxr

    with wave.open(io.BytesIO(data)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    pcm = np.frombuffer(frames, dtype=np.int16).astype(np.float32)
    out = soxr.resample(pcm, rate, 24000)
    peak = float(np.abs(out).max() or 1.0)
    return (out * (16000 / peak)).astype(np.int16)  # a clear, unclipped level


def _speak_after_chime(rig: _Rig, kiosk: Any, question: np.ndarray,
                       change: StateChange) -> None:
    """Like a patient: press, hear the chime, speak at once (often while the kiosk is still
    connecting: it keeps the audio and sends it when the session is ready)."""
    deadline = time.monotonic() + 2.0
    while kiosk.audio.playback.busy and time.monotonic() < deadline:
        time.sleep(0.02)  # the chime; the echo gate would keep words said over it out
    print(f"  (the virtual patient says: \"{QUESTION}\")")
    rig.play_into_mic(question).wait(15)


def _scripted(kiosk: Any, timeline: Timeline) -> int:
    """One session: press, speak, hear the answer, press to end. Prints the timeline."""
    try:
        kiosk.press(ev.ButtonPressed(source="demo"))
        i = timeline.wait_for(State.LISTENING, 0, SCRIPT_STEP_TIMEOUT_S)
        i = timeline.wait_for(State.SPEAKING, i, SCRIPT_STEP_TIMEOUT_S)
        i = timeline.wait_for(State.LISTENING, i, SCRIPT_STEP_TIMEOUT_S)
        kiosk.press(ev.ButtonPressed(source="demo"))
        timeline.wait_for(State.IDLE, i, SCRIPT_STEP_TIMEOUT_S)
    except TimeoutError as exc:
        print(timeline.render())
        print(f"voice-kiosk demo: the scripted session did not complete: {exc}",
              file=sys.stderr)
        return 1
    print(timeline.render())
    print("\na complete conversation turn: idle -> connecting -> listening -> thinking -> "
          "speaking -> listening -> idle")
    return 0


def _keyboard_loop(kiosk: Any) -> None:
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        while True:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            key = os.read(fd, 1).decode(errors="ignore")
            if key in ("q", "Q", "\x04"):
                return
            if key in ("\n", "\r"):
                kiosk.press(ev.ButtonPressed(source="keyboard"))
            elif key in ("l", "L"):
                kiosk.press(ev.ButtonPressed(long=True, source="keyboard"))
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _save_answer(recorder: Any, path: str) -> None:
    audio = recorder.stop()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(np.asarray(audio, dtype=np.int16).tobytes())
    seconds = len(audio) / 24000
    peak = int(np.abs(audio).max()) if len(audio) else 0
    print(f"recorded the kiosk's speaker ({seconds:.1f} s, peak {peak}) to {path}")



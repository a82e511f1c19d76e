"""Short sounds that tell the patient what the kiosk is doing.

Five cues, synthesised with numpy so the kiosk ships no sound files, each easy to tell apart
even by ear on a small speaker:

* ``listening`` -- rising two-note chime (660 -> 880 Hz): "speak now". It plays at the press
  itself: the kiosk keeps the microphone's audio from that moment while it connects, so the
  patient can talk right after the chime (the echo gate keeps the chime itself out).
* ``ended``     -- falling two-note chime (880 -> 587 Hz): "the conversation is over".
* ``error``     -- three short low beeps (330 Hz): "something is wrong".
* ``connecting`` -- one soft short tick (1320 Hz), repeated every 3 s while still connecting.
* ``nurse_call`` -- a high-low-high-low call signal (988 / 784 Hz): "a nurse has been called",
  when the assistive switch or the assistant requests a nurse (`on_nurse_call`).

Any cue can be replaced by a WAV file (``audio.cue_files``, any rate, mono or stereo, 16-bit).
Cues play through the answer output (mixed on top), so `Playback.busy` is true while they
sound and the echo gate keeps them out of what is sent to the server.

`CuePlayer.on_state_change` is a controller state observer::

    cues = CuePlayer(playback, settings)
    controller.add_observer(cues.on_state_change)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kiosk.audio.playback import Playback, volume_gain
from kiosk.audio.wavfile import read_wav
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.settings import AudioSettings
from kiosk.states import State, StateChange

if TYPE_CHECKING:
    from kiosk.nurse import NurseCallChange

log = logging.getLogger(__name__)

CUE_NAMES = ("listening", "ended", "error", "connecting", "nurse_call")
CONNECTING_REPEAT_S = 3.0
_FADE_S = 0.005


def _tone(freq_hz: float, dur_s: float, amp: float = 0.5) -> np.ndarray:
    """A sine burst with 5 ms raised-cosine edges, float in [-1, 1]."""
    n = int(SAMPLE_RATE_HZ * dur_s)
    t = np.arange(n) / SAMPLE_RATE_HZ
    x = amp * np.sin(2 * np.pi * freq_hz * t)
    k = min(int(SAMPLE_RATE_HZ * _FADE_S), n // 2)
    edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
    x[:k] *= edge
    x[n - k:] *= edge[::-1]
    return x


def _gap(dur_s: float) -> np.ndarray:
    return np.zeros(int(SAMPLE_RATE_HZ * dur_s))


def synthesize(name: str) -> np.ndarray:
    """The built-in cue `name` as 24 kHz int16 at full cue level."""
    if name == "listening":
        # 0.19 s: with the echo gate the microphone is kept from its end (plus the device's
        # latency and a margin), which must come before the 300 ms after the press when a
        # patient starts to talk.
        x = np.concatenate([_tone(660, 0.07), _gap(0.02), _tone(880, 0.10)])
    elif name == "ended":
        x = np.concatenate([_tone(880, 0.09), _gap(0.03), _tone(587, 0.14)])
    elif name == "error":
        x = np.concatenate([_tone(330, 0.08), _gap(0.06), _tone(330, 0.08), _gap(0.06),
                            _tone(330, 0.08)])
    elif name == "connecting":
        x = _tone(1320, 0.04, amp=0.3)
    elif name == "nurse_call":
        # Like a ward's call signal and unlike any other cue: four alternating notes.
        x = np.concatenate([np.concatenate([_tone(f, 0.12), _gap(0.04)])
                            for f in (988, 784, 988, 784)])
    else:
        raise ValueError(f"unknown cue {name!r}; known cues: {', '.join(CUE_NAMES)}")
    return np.round(x * 32767).astype(np.int16)


def load_wav(path: str | Path) -> np.ndarray:
    """A 16-bit WAV file as 24 kHz mono int16. Raises ValueError saying what is wrong."""
    try:
        return read_wav(path)
    except ValueError as exc:
        raise ValueError(f"cue file {exc}") from None


class CuePlayer:
    """Plays cues through a `Playback` and follows the controller's state changes.

    With ``settings.cues`` off it stays silent. ``settings.cue_volume`` (0-100) scales every
    cue; a broken override file is logged once and the built-in sound is used instead.
    """

    def __init__(self, playback: Playback, settings: AudioSettings) -> None:
        self._playback = playback
        self._settings = settings
        self._gain = volume_gain(settings.cue_volume)
        self.sounds: dict[str, np.ndarray] = {}
        for name in CUE_NAMES:
            self.sounds[name] = synthesize(name)
            path = settings.cue_files.get(name)
            if path:
                try:
                    self.sounds[name] = load_wav(path)
                except ValueError as exc:
                    log.error("%s; using the built-in %s cue", exc, name)
        self.connecting_repeat_s = CONNECTING_REPEAT_S
        self._speak_error: Callable[[StateChange], bool] | None = None
        self._ticker_stop: threading.Event | None = None
        self._lock = threading.Lock()
        self.played: list[str] = []
        """Names of cues played, oldest first (bounded; for tests and the demo display)."""

    def set_error_speaker(self, speak: Callable[[StateChange], bool] | None) -> None:
        """`speak(change)` says why an error happened (kiosk.audio.prompts) and returns True
        when it did; the error cue plays only when it did not."""
        self._speak_error = speak

    def play(self, name: str) -> None:
        """Play cue `name` now (no-op when cues are off)."""
        if not self._settings.cues:
            return
        self._playback.play_cue(self.sounds[name], self._gain)
        self.played.append(name)
        del self.played[:-32]

    def set_volume(self, percent: int) -> None:
        """Cue volume 0-100 from the next cue on (the night profile caps it)."""
        self._gain = volume_gain(percent)

    def on_nurse_call(self, change: NurseCallChange) -> None:
        """Nurse request observer: the call signal at each request."""
        if change.new_request:
            self.play("nurse_call")

    def on_state_change(self, change: StateChange) -> None:
        """Observer: listening, ended, error and the repeating connecting tick."""
        old, new = change.old, change.new
        if new == State.CONNECTING:
            self._start_ticker()
        else:
            self._stop_ticker()
        if new == State.CONNECTING and old in (State.IDLE, State.ERROR):
            self.play("listening")  # the press: audio is kept from now on, speak now
        elif new == State.LISTENING and change.ask_again:
            self.play("listening")  # no answer came: speak (the question) again
        elif new == State.IDLE and old in (State.LISTENING, State.THINKING, State.SPEAKING):
            self.play("ended")
        elif new == State.ERROR:  # also again on a press while the error lasts
            speak = self._speak_error
            if speak is None or not speak(change):
                self.play("error")

    def close(self) -> None:
        """Stop the connecting ticker."""
        self._stop_ticker()

    def _start_ticker(self) -> None:
        with self._lock:
            if self._ticker_stop is not None:
                return
            stop = self._ticker_stop = threading.Event()
        threading.Thread(target=self._tick, args=(stop,), name="cue-connecting",
                         daemon=True).start()

    def _stop_ticker(self) -> None:
        with self._lock:
            stop, self._ticker_stop = self._ticker_stop, None
        if stop is not None:
            stop.set()

    def _tick(self, stop: threading.Event) -> None:
        # wait() returns True when stopped: the tick only sounds after a full quiet interval.
        while not stop.wait(self.connecting_repeat_s):
            self.play("connecting")

"""Spoken prompts: when a patient's press cannot reach the assistant, the kiosk says so in a
short sentence in the patient's language, instead of only blinking and beeping.

What is said when (`StateChange.error_kind` of the error):

* ``unavailable`` ("The assistant is not available right now. Please use your call button if
  you need a nurse."): network, unavailable (gateway or speech service down, overloaded, rate
  limited, a link lost and not restored) -- it may work again later.
* ``out_of_order`` ("The assistant is out of order. ..."): auth (credential rejected), config,
  protocol, device (microphone), internal -- it needs IT staff. The patient hears no cause:
  the cause is in the journal and in `systemctl status`.

A prompt is said only when the error answers the patient: a visit that failed (a press, then
connecting, then error; or a conversation cut off) or a press while an error lasts. An error
nobody asked about (at start-up, a device lost while idle) keeps the error cue: the kiosk
never talks into a quiet room on its own.

Sources, per prompt: the recording in `audio.prompt_files`, else espeak-ng speaking
`audio.prompt_texts` or the built-in sentence (kiosk.audio.prompt_texts) in `kiosk.language`,
at `realtime.speed`. Synthesis runs once in a background thread at start and is cached in the
state directory (`$STATE_DIRECTORY/prompts`, systemd's StateDirectory=) under a key of text,
voice, rate and espeak-ng version, so later starts only read a file. Every prompt is
resampled to 24 kHz and brought to one speech level; it plays through the cue path at the
answer volume (`audio.volume`). Without espeak-ng the error cue plays, and the log says so once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kiosk import language as lang
from kiosk.audio.espeak import WORDS_PER_MINUTE, Espeak, SynthesisError
from kiosk.audio.prompt_texts import PROMPT_TEXTS
from kiosk.audio.wavfile import read_wav
from kiosk.files import write_atomically
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.settings import PROMPT_NAMES, Settings
from kiosk.states import State, StateChange

if TYPE_CHECKING:
    from kiosk.audio.playback import Playback

log = logging.getLogger(__name__)

SITUATION_BY_KIND: dict[str, str] = {
    "network": "unavailable", "unavailable": "unavailable", "rate_limited": "unavailable",
    "auth": "out_of_order", "config": "out_of_order", "protocol": "out_of_order",
    "device": "out_of_order", "internal": "out_of_order", "gpio": "out_of_order",
}
DEFAULT_SITUATION = "unavailable"  # a kind added later: the gentler sentence
IN_VISIT = (State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING)
FORMAT_VERSION = 1  # of the cached files' processing; part of the cache key
TARGET_RMS_DBFS = -18.0  # speech level of every prompt (loud parts), before the volume
PEAK_DBFS = -1.0
CACHE_SUBDIR = "prompts"

_missing_espeak_logged = False  # "says so in the log once", across reloads


def situation_for(error_kind: str | None) -> str:
    """The prompt said for an error of this kind."""
    return SITUATION_BY_KIND.get(error_kind or "", DEFAULT_SITUATION)


def answers_patient(change: StateChange) -> bool:
    """The error is the answer to a patient's press (see the module's docstring)."""
    return change.new is State.ERROR and (change.old in IN_VISIT or change.answers_press)


@dataclass(frozen=True)
class PromptPlan:
    """Where one prompt comes from: a recording, or a text for espeak-ng."""

    name: str
    file: str | None
    text: str
    voice: str | None  # espeak-ng's voice; None: espeak-ng is missing
    words_per_minute: int
    language: str  # the language the text is in (a tag), for logs

    def cache_key(self, espeak_version: str) -> str:
        blob = json.dumps([FORMAT_VERSION, self.text, self.voice, self.words_per_minute,
                           espeak_version], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan(settings: Settings, espeak: Espeak | None) -> dict[str, PromptPlan]:
    """What each prompt will be, from the settings and the installed espeak-ng."""
    tag = lang.parse(settings.language) if settings.language else None
    voice = espeak.voice_for(tag) if espeak else None
    wpm = round(WORDS_PER_MINUTE * settings.realtime.speed)
    plans = {}
    for name in PROMPT_NAMES:
        custom = settings.audio.prompt_texts.get(name)
        if custom:
            # IT's own sentence is in the patient's language; without a voice for it,
            # English pronunciation is still better than silence (check-config says so).
            text, said_in, speaker = custom, tag.tag if tag else "en", voice or "en"
        elif tag and tag.primary in PROMPT_TEXTS and voice:
            text, said_in, speaker = PROMPT_TEXTS[tag.primary][name], tag.tag, voice
        else:  # no built-in sentences in this language (or no voice for it): English
            text, said_in, speaker = PROMPT_TEXTS["en"][name], "en", "en"
        plans[name] = PromptPlan(name, settings.audio.prompt_files.get(name), text,
                                 speaker if espeak else None, wpm, said_in)
    return plans


def notices(settings: Settings, espeak: Espeak | None = None) -> list[str]:
    """What check-config tells IT staff about the spoken prompts."""
    if not settings.audio.prompts:
        return []
    espeak = espeak or Espeak.find()
    plans = plan(settings, espeak)
    needs_speech = [p.name for p in plans.values() if not p.file]
    out = []
    if needs_speech and espeak is None:
        out.append("espeak-ng is not installed: when the assistant cannot be reached the "
                   "patient hears only the error sound, no sentence. Install it (apt install "
                   "espeak-ng) or record audio.prompt_files for: " + ", ".join(needs_speech))
        return out
    tag = lang.parse(settings.language) if settings.language else None
    if tag is None or not needs_speech:
        return out
    if espeak is not None and espeak.voice_for(tag) is None:
        out.append(f"espeak-ng has no voice for {tag.name} ({tag.tag}): record "
                   "audio.prompt_files for " + ", ".join(needs_speech) + "; until then "
                   "they are spoken in English.")
    elif any(n not in settings.audio.prompt_texts for n in needs_speech) and (
            tag.primary not in PROMPT_TEXTS):
        out.append(f"no built-in spoken prompts in {tag.name}: they are spoken in English. "
                   "Write them in audio.prompt_texts (or record audio.prompt_files).")
    return out


def normalise(pcm: np.ndarray) -> np.ndarray:
    """Trim silence at both ends and bring speech to one level: the louder 20 ms blocks at
    TARGET_RMS_DBFS, peaks no higher than PEAK_DBFS. int16 in, int16 out."""
    x = np.asarray(pcm, dtype=np.float32)
    loud = np.flatnonzero(np.abs(x) > 32768 * 10 ** (-50 / 20))
    if not len(loud):
        return np.zeros(0, np.int16)
    margin = SAMPLE_RATE_HZ // 20  # 50 ms: no word is clipped
    x = x[max(0, loud[0] - margin):loud[-1] + margin]
    block = SAMPLE_RATE_HZ // 50
    n = len(x) // block * block
    rms = np.sqrt(np.mean(x[:n].reshape(-1, block) ** 2, axis=1)) if n else np.sqrt(
        np.mean(x ** 2, keepdims=True))
    active = rms[rms >= rms.max() * 10 ** (-30 / 20)]  # within 30 dB of the loudest block
    level = float(np.sqrt(np.mean(active ** 2)))
    gain = 32768 * 10 ** (TARGET_RMS_DBFS / 20) / max(level, 1e-9)
    peak = float(np.abs(x).max()) * gain
    gain *= min(1.0, 32767 * 10 ** (PEAK_DBFS / 20) / peak)
    return np.round(x * gain).astype(np.int16)


def state_directory() -> Path:
    """systemd's StateDirectory= ($STATE_DIRECTORY, its first entry), else the user's
    $XDG_STATE_HOME/voice-kiosk (a kiosk run by hand, the tests)."""
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "voice-kiosk"


@dataclass
class Prepared:
    """One prompt ready to play, and how it was made (for the log and the CLI)."""

    name: str
    pcm: np.ndarray  # 24 kHz int16, normalised
    source: str  # "file /etc/...", "espeak-ng de (cached)", ...
    synthesis_s: float | None = None

    @property
    def seconds(self) -> float:
        return len(self.pcm) / SAMPLE_RATE_HZ


class SpokenPrompts:
    """Prepares the prompts in the background and says them for errors that answer a press.

    >>> prompts = SpokenPrompts(settings, engine.playback)
    >>> engine.cues.set_error_speaker(prompts.speak_for)
    >>> prompts.start()          # returns at once; ready within a second or so
    """

    def __init__(self, settings: Settings, playback: Playback | None,
                 cache_dir: Path | None = None) -> None:
        from kiosk.audio.playback import volume_gain

        self.settings = settings
        self._playback = playback
        self._gain = volume_gain(settings.audio.volume)  # a sentence, as loud as an answer
        self.cache_dir = cache_dir if cache_dir is not None else (
            state_directory() / CACHE_SUBDIR)
        self.ready: dict[str, Prepared] = {}  # replaced whole when a prompt is ready
        self.said: list[str] = []
        """Names of the prompts said, oldest first (bounded; tests and the demo display)."""
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- preparing (background) ---------------------------------------------------------

    def start(self) -> None:
        """Prepare every prompt on a thread of its own (never the controller's)."""
        if not self.settings.audio.prompts:
            self.done.set()
            return
        self._thread = threading.Thread(target=self._prepare_logged, name="prompts",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _prepare_logged(self) -> None:
        try:
            self.prepare()
        except Exception:  # noqa: BLE001 - a prompt is a nicety: the error cue still works
            log.exception("spoken prompts could not be prepared; the error sound is used")
        finally:
            self.done.set()

    def prepare(self) -> dict[str, Prepared]:
        """Load or synthesise every prompt now (blocking); returns what is ready."""
        global _missing_espeak_logged
        espeak = Espeak.find()
        plans = plan(self.settings, espeak)
        missing = []
        for p in plans.values():
            if self._stop.is_set():
                break
            prepared = self._from_file(p) if p.file else None
            if prepared is None and espeak is not None and p.voice is not None:
                prepared = self._from_espeak(p, espeak)
            if prepared is None:
                missing.append(p.name)
                continue
            self.ready = {**self.ready, p.name: prepared}
        if self.ready:
            log.info("spoken prompts ready: %s", "; ".join(
                f"{p.name} {p.seconds:.1f} s from {p.source}" for p in self.ready.values()))
        if missing and espeak is None and not _missing_espeak_logged:
            _missing_espeak_logged = True
            log.warning("espeak-ng is not installed: the patient hears the error sound instead "
                        "of a sentence saying the assistant is unavailable (%s). Install it "
                        "(apt install espeak-ng), then systemctl reload voice-kiosk",
                        ", ".join(missing))
        return self.ready

    def _from_file(self, p: PromptPlan) -> Prepared | None:
        assert p.file is not None
        from kiosk.config_values import expand_path

        try:
            pcm = normalise(read_wav(expand_path(p.file)))
        except ValueError as exc:
            log.error("audio.prompt_files.%s: %s; speaking the built-in sentence instead",
                      p.name, exc)
            return None
        if not len(pcm):
            log.error("audio.prompt_files.%s: %s is silent; speaking the built-in sentence "
                      "instead", p.name, p.file)
            return None
        return Prepared(p.name, pcm, f"file {p.file}")

    def _from_espeak(self, p: PromptPlan, espeak: Espeak) -> Prepared | None:
        assert p.voice is not None
        path = self.cache_dir / f"{p.name}-{p.cache_key(espeak.version)}.wav"
        source = f"espeak-ng {espeak.version} voice {p.voice} ({p.language})"
        if path.is_file():
            try:
                return Prepared(p.name, read_wav(path), source + ", cached")
            except ValueError:
                log.warning("cached prompt %s unreadable; synthesising it again", path)
        started = time.monotonic()
        try:
            pcm = normalise(espeak.synthesize(p.text, p.voice, p.words_per_minute))
        except SynthesisError as exc:
            log.error("spoken prompt %s: %s; the error sound is used instead", p.name, exc)
            return None
        took = time.monotonic() - started
        self._store(p.name, path, pcm)
        return Prepared(p.name, pcm, f"{source}, synthesised in {took:.2f} s", took)

    def _store(self, name: str, path: Path, pcm: np.ndarray) -> None:
        """Write to the cache (atomically) and drop this prompt's older versions."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = io.BytesIO()
            with wave.open(data, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SAMPLE_RATE_HZ)
                w.writeframes(pcm.astype("<i2").tobytes())
            write_atomically(path, data.getvalue())
            for old in path.parent.glob(f"{name}-*.wav"):
                if old != path:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot cache spoken prompts in %s (%s); they are synthesised at every "
                        "start", path.parent, exc.strerror or exc)

    # -- saying (controller thread: only a lookup and a reference swap) ----------------------

    def speak_for(self, change: StateChange) -> bool:
        """Say the prompt for an error that answers a press; True when one was said."""
        if not self.settings.audio.prompts or not answers_patient(change):
            return False
        name = situation_for(change.error_kind)
        prepared = self.ready.get(name)
        if prepared is None or self._playback is None:
            return False
        self._playback.play_cue(prepared.pcm, self._gain)
        self.said.append(name)
        del self.said[:-32]
        log.info("said the %s prompt (%s error)", name, change.error_kind or "unknown")
        return True

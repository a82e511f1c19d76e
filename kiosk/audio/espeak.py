"""espeak-ng, the offline speech synthesiser that speaks the kiosk's prompts (Debian package
`espeak-ng`). Run as a subprocess: it needs no network, no sound device and no Python binding,
and a crash of it cannot take the kiosk down.

    espeak = Espeak.find()          # None when it is not installed
    voice = espeak.voice_for(language.parse("pt-BR"))   # "pt-br"
    pcm = espeak.synthesize("Olá.", voice, words_per_minute=150)   # 24 kHz int16

Calls block (tens of milliseconds on a PC, a few hundred on a Pi): never on the controller
thread.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiosk.audio.wavfile import read_wav
from kiosk.language import Language

EXECUTABLE = "espeak-ng"
WORDS_PER_MINUTE = 150  # espeak-ng's own default is 175; slower is clearer at a bedside
MIN_WPM, MAX_WPM = 80, 450  # espeak-ng's accepted range
TIMEOUT_S = 30.0


class SynthesisError(RuntimeError):
    """espeak-ng could not speak a text; the message says why."""


@dataclass(frozen=True)
class Espeak:
    path: str
    version: str
    languages: frozenset[str]
    """Lower-case language names its voices answer to (`de`, `pt-br`, `en`, `zh`...)."""

    @classmethod
    def find(cls, timeout_s: float = 10.0) -> Espeak | None:
        """The installed espeak-ng, or None when it is not on the PATH (or does not run)."""
        path = shutil.which(EXECUTABLE)
        if path is None:
            return None
        try:
            version = _run([path, "--version"], timeout_s)
            voices = _run([path, "--voices"], timeout_s)
        except SynthesisError:
            return None
        m = re.search(r"text-to-speech:\s*(\S+)", version)
        return cls(path, m.group(1) if m else version.strip()[:40], parse_voices(voices))

    def voice_for(self, language: Language | None) -> str | None:
        """espeak-ng's voice for a language: the whole tag (`pt-br`), else the language
        (`pt`); None when it has none. No language: English."""
        if language is None:
            return "en"
        names = [language.tag.lower()]
        if language.region:
            names.append(f"{language.primary}-{language.region}".lower())  # sr-Latn-RS: sr-rs
        for name in [*names, language.primary, language.iso639_1]:
            if name in self.languages:
                return name
        return None

    def synthesize(self, text: str, voice: str, words_per_minute: int = WORDS_PER_MINUTE,
                   timeout_s: float = TIMEOUT_S) -> np.ndarray:
        """`text` spoken by `voice`, as 24 kHz mono int16. Raises SynthesisError."""
        wpm = max(MIN_WPM, min(MAX_WPM, int(words_per_minute)))
        with tempfile.TemporaryDirectory(prefix="voice-kiosk-espeak-") as work:
            out = Path(work) / "speech.wav"
            # The text goes in on stdin (a text starting with "-" is no option), as UTF-8
            # (-b 1) whatever the service's locale; HOME is a scratch directory so espeak-ng
            # finds no user configuration and writes nothing elsewhere.
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": work,
                   "LANG": "C.UTF-8"}
            try:
                done = subprocess.run(
                    [self.path, "-b", "1", "-v", voice, "-s", str(wpm), "-w", str(out),
                     "--stdin"], input=text.encode("utf-8"), capture_output=True, env=env,
                    timeout=timeout_s, cwd=work, check=False)
            except subprocess.TimeoutExpired:
                raise SynthesisError(f"espeak-ng took longer than {timeout_s:g} s") from None
            except OSError as exc:
                raise SynthesisError(f"cannot run {self.path}: {exc.strerror}") from None
            said = done.stderr.decode("utf-8", "replace").strip()
            if done.returncode != 0 or not out.exists():
                raise SynthesisError(f"espeak-ng -v {voice} failed (exit {done.returncode})"
                                     + (f": {said[:200]}" if said else ""))
            try:
                pcm = read_wav(out)
            except ValueError as exc:
                raise SynthesisError(f"espeak-ng wrote an unreadable file: {exc}") from None
        if not len(pcm):
            raise SynthesisError(f"espeak-ng -v {voice} produced no audio")
        return pcm


def parse_voices(listing: str) -> frozenset[str]:
    """The language names in `espeak-ng --voices` output: the Language column and the
    aliases in the last column, e.g. ``(zh-cmn 5)(zh 5)``."""
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            names.add(fields[1].lower())
            names.update(a.lower() for a in re.findall(r"\(([A-Za-z0-9-]+) \d+\)", line))
    return frozenset(names)


def _run(argv: list[str], timeout_s: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SynthesisError(f"cannot run {argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise SynthesisError(f"{' '.join(argv)} failed (exit {done.returncode})")
    return done.stdout.decode("utf-8", "replace")

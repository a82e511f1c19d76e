"""`voice-kiosk prompts`: what the patient hears when the assistant cannot be reached, for IT
staff; `--export DIR` writes each prompt as the WAV file the kiosk plays (a starting point for
recordings of their own, `audio.prompt_files`)."""

from __future__ import annotations

import tempfile
import wave
from pathlib import Path

from kiosk import language as lang
from kiosk.audio.espeak import Espeak
from kiosk.audio.prompts import SITUATION_BY_KIND, SpokenPrompts, plan
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.settings import PROMPT_NAMES, Settings


def report(settings: Settings, export: Path | None = None) -> tuple[str, bool]:
    """(the text to print, whether every prompt is ready)."""
    tag = lang.parse(settings.language) if settings.language else None
    espeak = Espeak.find()
    lines = [f"kiosk.language: {f'{tag.tag} ({tag.name})' if tag else 'not set (English)'}; "
             + (f"espeak-ng {espeak.version}" if espeak else "espeak-ng not installed")]
    if not settings.audio.prompts:
        lines.append("audio.prompts is false: every error plays the error sound only.")
        return "\n".join(lines), True
    with tempfile.TemporaryDirectory(prefix="voice-kiosk-prompts-") as scratch:
        ready = SpokenPrompts(settings, None, cache_dir=Path(scratch)).prepare()
    plans = plan(settings, espeak)
    for name in PROMPT_NAMES:
        kinds = ", ".join(k for k, s in SITUATION_BY_KIND.items() if s == name)
        lines.append(f"{name} -- said when a press meets one of these errors: {kinds}")
        p, prepared = plans[name], ready.get(name)
        if prepared is None:
            lines.append("    not available: the error sound plays instead")
            continue
        if not prepared.source.startswith("file"):
            lines.append(f"    \"{p.text}\"")
        lines.append(f"    {prepared.seconds:.1f} s, {prepared.source}")
        if export is not None:
            export.mkdir(parents=True, exist_ok=True)
            path = export / f"{name}.wav"
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SAMPLE_RATE_HZ)
                w.writeframes(prepared.pcm.astype("<i2").tobytes())
            lines.append(f"    written to {path}")
    lines.append("Errors nobody pressed for (at start-up, a device lost while idle) play the "
                 "error sound only.")
    return "\n".join(lines), len(ready) == len(PROMPT_NAMES)

"""check-config on the language, speech rate and spoken prompt keys: every mistake named with
file, line and key, and what to do."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from kiosk import config
from tests.audio.helpers import tone
from tests.test_config import problems, write


def wav(path: Path, seconds: float = 1.0, width: int = 2, rate: int = 16000) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        pcm = tone(440, seconds, rate_hz=rate)
        w.writeframes(pcm.tobytes() if width == 2 else (pcm // 256 + 128).astype(np.uint8)
                      .tobytes())
    return str(path)


def test_language_tags_are_checked_and_written_canonically(tmp_path):
    path = write(tmp_path, "kiosk:\n  id: bed-1\n  language: pt_br\n")
    (p,) = problems(path)
    assert (p.line, p.key) == (3, "kiosk.language")
    assert "use a hyphen, not an underscore: `pt-br`" in p.message
    path = write(tmp_path, "kiosk:\n  language: Arabic\n")
    (p,) = problems(path)
    assert "Did you mean `ar` (Arabic)?" in p.message
    loaded = config.load(write(tmp_path, "kiosk:\n  language: PT-br\n"))
    assert loaded.kiosk.language == "pt-BR" and loaded.language == "pt-BR"


def test_the_old_gateway_language_still_counts_and_is_noted(tmp_path):
    loaded = config.load(write(tmp_path, "gateway:\n  language: de\n"))
    assert loaded.language == "de"
    assert any("gateway.language is now kiosk.language" in n for n in config.notices(loaded))
    path = write(tmp_path, "kiosk:\n  language: es\ngateway:\n  language: de\n")
    (p,) = problems(path)
    assert p.key == "gateway.language" and "differs from kiosk.language `es`" in p.message
    path = write(tmp_path, "gateway:\n  language: klingon\n")
    assert problems(path)[0].key == "gateway.language"


@pytest.mark.parametrize(("value", "ok"), [(0.25, True), (1.5, True), (0.8, True),
                                           (0.2, False), (1.6, False)])
def test_speed_range(tmp_path, value, ok):
    path = write(tmp_path, f"realtime:\n  speed: {value}\n")
    if ok:
        assert config.load(path).realtime.speed == value
    else:
        (p,) = problems(path)
        assert p.key == "realtime.speed" and "use 0.25 to 1.5" in p.message


def test_prompt_files_must_be_readable_16_bit_wav_files(tmp_path):
    good = wav(tmp_path / "good.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    eight = wav(tmp_path / "eight.wav", width=1)
    long = wav(tmp_path / "long.wav", seconds=31, rate=8000)
    path = write(tmp_path, f"audio:\n  prompt_files:\n    unavailable: {good}\n"
                           f"    out_of_order: {text}\n  cue_files:\n    error: {eight}\n"
                           f"    ended: {tmp_path / 'missing.wav'}\n"
                           f"    listening: {long}\n")
    found = {p.key: p for p in problems(path)}
    assert set(found) == {"audio.prompt_files.out_of_order", "audio.cue_files.error",
                          "audio.cue_files.ended", "audio.cue_files.listening"}
    assert found["audio.prompt_files.out_of_order"].line == 4
    assert "is not a PCM WAV file" in found["audio.prompt_files.out_of_order"].message
    assert "8-bit audio, not 16-bit; convert it: sox" in found["audio.cue_files.error"].message
    assert "does not exist" in found["audio.cue_files.ended"].message
    assert "keep it under 10 s" in found["audio.cue_files.listening"].message
    path = write(tmp_path, f"audio:\n  prompt_files:\n    unavailable: {long}\n"
                           f"    out_of_orde: {good}\n")
    found = {p.key: p for p in problems(path)}
    assert "Did you mean `audio.prompt_files.out_of_order`?" in (
        found["audio.prompt_files.out_of_orde"].message)
    assert "keep it under 30 s" in found["audio.prompt_files.unavailable"].message
    loaded = config.load(write(tmp_path, f"audio:\n  prompt_files: {{unavailable: {good}}}\n"))
    assert loaded.audio.prompt_files == {"unavailable": good}


def test_prompt_texts_are_short_and_not_empty(tmp_path):
    path = write(tmp_path, "audio:\n  prompt_texts:\n    unavailable: ''\n"
                           f"    out_of_order: {'x' * 301}\n")
    found = {p.key: p.message for p in problems(path)}
    assert "must not be empty" in found["audio.prompt_texts.unavailable"]
    assert "301 characters; keep it under 300" in found["audio.prompt_texts.out_of_order"]

"""Spoken prompts: espeak-ng speaks every built-in language, the result is cached by what
made it, replaced files win, the right sentence answers the right error, and nothing of it
runs on the controller's thread."""

from __future__ import annotations

import logging
import os
import queue
import stat
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from kiosk import config
from kiosk.audio import prompts as prompts_module
from kiosk.audio.cues import CuePlayer, synthesize
from kiosk.audio.espeak import Espeak
from kiosk.audio.playback import volume_gain
from kiosk.audio.prompt_texts import PROMPT_TEXTS
from kiosk.audio.prompts import SpokenPrompts, normalise, plan
from kiosk.language import parse
from kiosk.settings import PROMPT_NAMES, Settings
from kiosk.states import State, StateChange

from .helpers import dominant_hz, is_speech_like, rms_dbfs, speech_features, tone


def espeak() -> Espeak:
    found = Espeak.find()
    assert found is not None, ("espeak-ng is missing: it is a runtime package "
                               "(systemd/packages-runtime.txt); `bash systemd/bootstrap.sh "
                               "venv` installs it")
    return found


def settings(**sections: str) -> Settings:
    return config.parse("".join(f"{name}:\n{body}" for name, body in sections.items()))


def write_wav(path: Path, pcm: np.ndarray, rate: int, channels: int = 1) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        data = np.repeat(pcm[:, None], channels, axis=1) if channels > 1 else pcm
        w.writeframes(data.astype("<i2").tobytes())
    return str(path)


class RecordingPlayback:
    def __init__(self) -> None:
        self.played: queue.Queue[tuple[np.ndarray, float]] = queue.Queue()

    def play_cue(self, pcm: np.ndarray, gain: float = 1.0) -> None:
        self.played.put((pcm, gain))


def error(old: State, kind: str, answers_press: bool = False) -> StateChange:
    return StateChange(old, State.ERROR, "test", "v1", time.monotonic(), kind,
                       answers_press=answers_press)


def test_espeak_ng_speaks_every_built_in_language(tmp_path):
    e = espeak()
    took = {}
    for code, texts in PROMPT_TEXTS.items():
        assert set(texts) == set(PROMPT_NAMES), code
        voice = e.voice_for(parse(code))
        assert voice is not None, f"espeak-ng {e.version} has no voice for {code}"
        p = SpokenPrompts(settings(kiosk=f"  language: {code}\n"), None, cache_dir=tmp_path)
        ready = p.prepare()
        assert set(ready) == set(PROMPT_NAMES), code
        for name, prepared in ready.items():
            assert f"voice {voice} ({code})" in prepared.source
            assert 2.0 < prepared.seconds < 12.0, (code, name, prepared.seconds)
            assert is_speech_like(prepared.pcm), (code, name, speech_features(prepared.pcm))
            took[f"{code}/{name}"] = (prepared.synthesis_s, prepared.seconds)
    print("synthesis s, prompt s:", {k: (round(a, 3), round(b, 1)) for k, (a, b) in
                                     took.items()})


def test_speech_check_tells_speech_from_tones_and_noise():
    assert not is_speech_like(tone(440, 3.0))
    assert not is_speech_like(np.random.default_rng(1).normal(0, 3000, 72000).astype(np.int16))
    assert is_speech_like(espeak().synthesize("Please use your call button.", "en"))


def test_prompts_are_cached_by_text_voice_rate_and_espeak_version(tmp_path):
    e = espeak()
    first = SpokenPrompts(settings(kiosk="  language: de\n"), None, cache_dir=tmp_path)
    made = first.prepare()
    assert all("synthesised in" in p.source for p in made.values())
    files = sorted(tmp_path.glob("*.wav"))
    assert [f.name.split("-")[0] for f in files] == ["out_of_order", "unavailable"]
    again = SpokenPrompts(settings(kiosk="  language: de\n"), None, cache_dir=tmp_path).prepare()
    assert all(p.source.endswith("cached") for p in again.values())
    assert all(np.array_equal(again[n].pcm, made[n].pcm) for n in PROMPT_NAMES)
    # A slower rate is another prompt: made again, the old file removed.
    slow = SpokenPrompts(settings(kiosk="  language: de\n", realtime="  speed: 0.7\n"), None,
                         cache_dir=tmp_path).prepare()
    assert slow["unavailable"].seconds > made["unavailable"].seconds * 1.2
    assert sorted(tmp_path.glob("*.wav")) != files and len(list(tmp_path.glob("*.wav"))) == 2
    p = plan(settings(kiosk="  language: de\n"), e)["unavailable"]
    assert p.cache_key(e.version) != p.cache_key(e.version + "-next")
    custom = plan(settings(audio="  prompt_texts: {unavailable: Bitte klingeln.}\n"), e)
    assert custom["unavailable"].cache_key(e.version) != p.cache_key(e.version)


def test_a_cache_that_cannot_be_written_still_gives_prompts(tmp_path, caplog):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(locked, os.W_OK):  # root ignores the mode: use a path under a file
            locked = tmp_path / "a-file"
            locked.write_text("")
        with caplog.at_level(logging.WARNING):
            ready = SpokenPrompts(settings(kiosk="  id: x\n"), None,
                                  cache_dir=locked / "prompts").prepare()
        assert set(ready) == set(PROMPT_NAMES)
        assert "cannot cache spoken prompts" in caplog.text
    finally:
        (tmp_path / "locked").chmod(stat.S_IRWXU)


def test_replaced_files_are_resampled_normalised_and_win(tmp_path, caplog):
    quiet = (tone(1000, 2.0, rate_hz=48000) * 0.01).astype(np.int16)  # about -46 dBFS
    path = write_wav(tmp_path / "mine.wav", np.concatenate([np.zeros(4800, np.int16), quiet]),
                     48000, channels=2)
    s = settings(audio=f"  prompt_files: {{unavailable: {path}}}\n")
    ready = SpokenPrompts(s, None, cache_dir=tmp_path / "cache").prepare()
    mine = ready["unavailable"]
    assert mine.source == f"file {path}"
    assert mine.seconds == pytest.approx(0.05 + 2.0, abs=0.01)  # 0.2 s lead trimmed to 50 ms
    assert dominant_hz(mine.pcm, 24000) == pytest.approx(1000, abs=2)
    assert rms_dbfs(mine.pcm[1200:-1200]) == pytest.approx(prompts_module.TARGET_RMS_DBFS,
                                                            abs=0.3)
    assert "espeak-ng" in ready["out_of_order"].source  # the other one is still spoken
    Path(path).write_text("broken since check-config")
    with caplog.at_level(logging.ERROR):
        ready = SpokenPrompts(s, None, cache_dir=tmp_path / "cache").prepare()
    assert "espeak-ng" in ready["unavailable"].source
    assert "audio.prompt_files.unavailable" in caplog.text


def test_normalise_levels_speech_and_caps_peaks():
    loud = espeak().synthesize("The assistant is out of order.", "en")
    for pcm in (loud, (loud * 0.05).astype(np.int16)):
        out = normalise(pcm)
        assert np.abs(out).max() <= 32767 * 10 ** (-1 / 20) + 1
        assert -24 < rms_dbfs(out) < -16
    assert len(normalise(np.zeros(24000, np.int16))) == 0


def test_the_right_sentence_answers_the_right_error(tmp_path):
    files = {"unavailable": write_wav(tmp_path / "u.wav", tone(440, 1.0), 24000),
             "out_of_order": write_wav(tmp_path / "o.wav", tone(660, 1.0), 24000)}
    s = settings(audio=f"  volume: 70\n  prompt_files: {{unavailable: {files['unavailable']}, "
                       f"out_of_order: {files['out_of_order']}}}\n")
    fake = RecordingPlayback()
    spoken = SpokenPrompts(s, fake, cache_dir=tmp_path)  # type: ignore[arg-type]
    spoken.prepare()
    cues = CuePlayer(fake, s.audio)  # type: ignore[arg-type]
    cues.set_error_speaker(spoken.speak_for)
    cases = [
        (error(State.CONNECTING, "network"), 440),  # the press found the network down
        (error(State.CONNECTING, "unavailable"), 440),
        (error(State.SPEAKING, "network"), 440),  # the conversation was cut off
        (error(State.CONNECTING, "auth"), 660),  # needs IT: "out of order"
        (error(State.LISTENING, "device"), 660),
        (error(State.CONNECTING, "protocol"), 660),
        (error(State.ERROR, "config", answers_press=True), 660),  # a press while broken
        (error(State.IDLE, "config"), "cue"),  # at start-up: nobody asked, no talking
        (error(State.IDLE, "device"), "cue"),  # the microphone unplugged while idle
        (error(State.ERROR, "device"), "cue"),  # a second fault, no press
    ]
    try:
        for change, expected in cases:
            cues.on_state_change(change)
            pcm, gain = fake.played.get_nowait()
            assert fake.played.empty()
            if expected == "cue":
                assert np.array_equal(pcm, synthesize("error")), change
            else:
                assert dominant_hz(pcm, 24000) == pytest.approx(expected, abs=2), change
                assert gain == volume_gain(70)  # as loud as an answer
        assert spoken.said == ["unavailable"] * 3 + ["out_of_order"] * 4
    finally:
        cues.close()
    off = SpokenPrompts(settings(audio="  prompts: false\n"), fake,  # type: ignore[arg-type]
                        cache_dir=tmp_path)
    off.start()
    assert off.done.wait(5) and not off.ready
    assert not off.speak_for(error(State.CONNECTING, "network"))


def test_without_espeak_the_error_cue_plays_and_the_log_says_so_once(tmp_path, monkeypatch,
                                                                      caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run here
    monkeypatch.setattr(prompts_module, "_missing_espeak_logged", False)
    fake = RecordingPlayback()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # a reload builds it again: still one line
            spoken = SpokenPrompts(settings(kiosk="  language: de\n"), fake,  # type: ignore
                                   cache_dir=tmp_path)
            assert spoken.prepare() == {}
            assert not spoken.speak_for(error(State.CONNECTING, "network"))
    warnings = [r for r in caplog.records if "espeak-ng is not installed" in r.message]
    assert len(warnings) == 1 and "apt install espeak-ng" in warnings[0].message
    assert any("espeak-ng is not installed" in n for n in
               prompts_module.notices(settings(kiosk="  language: de\n")))


def test_preparing_never_holds_up_the_caller(tmp_path, monkeypatch):
    """start() returns at once; until the prompts are ready, errors play the cue."""
    real = espeak().path
    slow = tmp_path / "bin" / "espeak-ng"
    slow.parent.mkdir()
    slow.write_text(f"#!/bin/sh\nsleep 1\nexec {real} \"$@\"\n")
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow.parent}:{os.environ['PATH']}")
    fake = RecordingPlayback()
    spoken = SpokenPrompts(settings(kiosk="  id: x\n"), fake,  # type: ignore[arg-type]
                           cache_dir=tmp_path / "cache")
    started = time.monotonic()
    spoken.start()
    returned_s = time.monotonic() - started
    try:
        assert returned_s < 0.1, returned_s
        assert not spoken.speak_for(error(State.CONNECTING, "network"))  # not ready yet
        assert spoken.done.wait(30)
        assert spoken.speak_for(error(State.CONNECTING, "network"))
        assert is_speech_like(fake.played.get_nowait()[0])
    finally:
        spoken.close()

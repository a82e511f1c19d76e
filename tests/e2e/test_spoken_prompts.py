"""When a press cannot reach the assistant, the patient hears why: `voice-kiosk run` against the
simulator with the gateway failing or stopped, heard on the virtual speaker and measured
(duration, a speech-like spectrum, the frequency of a replaced prompt file)."""

from __future__ import annotations

import os
import re
import signal
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.audio.helpers import is_speech_like, speech_features
from tests.e2e.signals import dominant_hz, loud_runs, tone, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

RATE = 24000


def sentences(recording: np.ndarray, min_s: float) -> list[np.ndarray]:
    """Sounds at least `min_s` long that have ended (quiet for 0.6 s after them), joined
    across the pauses between words and sentences."""
    found = []
    for start, end in loud_runs(recording, threshold=300, gap_s=0.6):
        if end - start >= min_s * RATE and end + 0.6 * RATE < len(recording):
            found.append(recording[start:end])
    return found


def prompt_seconds(kiosk, name: str) -> float:
    """The prompt's length as the kiosk logged it when it made the prompt."""
    m = re.search(rf"spoken prompts ready: .*{name} ([0-9.]+) s from", kiosk.proc.log)
    assert m, kiosk.proc.log[-3000:]
    return float(m.group(1))


def error_cue_played(recording: np.ndarray) -> bool:
    """The error cue is in the recording: three 330 Hz beeps starting 0.14 s apart. (One
    syllable of a sentence can pass for a beep -- the German prompt has one -- three in that
    rhythm cannot.)"""
    starts = [s for s, e in loud_runs(recording, threshold=600, gap_s=0.03)
              if 0.05 * RATE < e - s < 0.15 * RATE
              and abs(dominant_hz(recording[s:e], RATE) - 330) < 25]
    return any(abs(b - a - 0.14 * RATE) < 0.02 * RATE and abs(c - b - 0.14 * RATE) < 0.02 * RATE
               for a, b, c in zip(starts, starts[1:], starts[2:], strict=False))


def press_and_hear(kiosk, rig, name: str, kind: str, min_s: float) -> np.ndarray:
    """Press, and return the prompt heard. The kiosk retries for gateway.give_up_s (2 s here)
    before it gives up: the chime at the press is well apart from the sentence."""
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    try:
        kiosk.press()
        kiosk.wait_state("error", 30)
        kiosk.proc.wait_for_log(rf"said the {name} prompt \({kind} error\)", 10)
        heard = wait_until(lambda: sentences(speaker.samples(), min_s), 20, f"the {name} prompt")
        recording = speaker.samples()
    finally:
        speaker.stop()
    assert isinstance(heard, list)
    assert len(heard) == 1, [len(h) / RATE for h in heard]
    assert not error_cue_played(recording)  # the sentence instead of the error sound
    return heard[0]


@pytest.mark.parametrize("how", ["503", "stopped"])
def test_gateway_down_the_patient_hears_that_the_assistant_is_unavailable(start_kiosk, sim,
                                                                          rig, how):
    if how == "503":  # the gateway answers, but cannot make a session
        sim.knobs.gateway_status = 503
        kiosk = start_kiosk(gateway={"give_up_s": 2.0})
        kind = "unavailable"
    else:  # nothing listens where the gateway should be
        kiosk = start_kiosk(gateway={"give_up_s": 2.0, "url": "http://127.0.0.1:9"},
                            kiosk={"language": "de"})
        kind = "network"
    kiosk.proc.wait_for_log(r"spoken prompts ready", 30)
    expected_s = prompt_seconds(kiosk, "unavailable")
    heard = press_and_hear(kiosk, rig, "unavailable", kind, min_s=2.0)
    # The whole sentence came out of the speaker: as long as the kiosk made it (the loud part
    # starts and ends within the 50 ms of quiet kept at its ends) and it sounds like speech.
    assert abs(len(heard) / RATE - expected_s) < 0.25, (len(heard) / RATE, expected_s)
    assert is_speech_like(heard), speech_features(heard)
    if how == "stopped":
        assert re.search(r"unavailable [0-9.]+ s from espeak-ng \S+ voice de \(de\)",
                         kiosk.proc.log)


def write_tone(path: Path, freq_hz: float, seconds: float, rate_hz: int) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(tone(freq_hz, seconds, rate_hz=rate_hz, amplitude=0.3).tobytes())
    return str(path)


def test_replaced_prompt_files_are_what_the_patient_hears(start_kiosk, sim, rig, tmp_path):
    files = {"unavailable": write_tone(tmp_path / "unavailable.wav", 440, 1.5, 16000),
             "out_of_order": write_tone(tmp_path / "out_of_order.wav", 660, 1.2, 44100)}
    sim.knobs.gateway_status = 503
    kiosk = start_kiosk(gateway={"give_up_s": 2.0}, audio={"prompt_files": files})
    kiosk.proc.wait_for_log(r"spoken prompts ready: unavailable 1\.5 s from file "
                            rf"{re.escape(files['unavailable'])}; out_of_order 1\.2 s", 30)
    heard = press_and_hear(kiosk, rig, "unavailable", "unavailable", min_s=1.0)
    assert dominant_hz(heard, RATE) == pytest.approx(440, abs=3)
    assert abs(len(heard) / RATE - 1.5) < 0.1
    kiosk.wait_state("idle", 15)
    sim.knobs.gateway_status = 401  # the credential is rejected: that needs IT staff
    heard = press_and_hear(kiosk, rig, "out_of_order", "auth", min_s=0.8)
    assert dominant_hz(heard, RATE) == pytest.approx(660, abs=3)
    assert abs(len(heard) / RATE - 1.2) < 0.1


def test_without_espeak_ng_the_error_cue_plays_and_the_log_says_so_once(start_kiosk, sim, rig,
                                                                         tmp_path):
    bin_dir = tmp_path / "bin-without-espeak"  # the daemon's PATH: no espeak-ng there
    bin_dir.mkdir()
    sim.knobs.gateway_status = 503
    kiosk = start_kiosk(env={"PATH": f"{bin_dir}:{Path(os.sys.executable).parent}"},
                        gateway={"give_up_s": 2.0})
    kiosk.proc.wait_for_log(r"espeak-ng is not installed: the patient hears the error sound", 30)
    kiosk.proc.signal(signal.SIGHUP)  # a reload builds the kiosk again
    kiosk.proc.wait_for_log(r"reloaded", 15)
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    kiosk.press()
    kiosk.wait_state("error", 30)
    wait_until(lambda: error_cue_played(speaker.samples()), 10, "the error cue")
    speaker.stop()
    assert kiosk.proc.log.count("espeak-ng is not installed") == 1
    assert "said the" not in kiosk.proc.log

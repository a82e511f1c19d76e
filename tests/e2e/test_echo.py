"""Echo cancellation through the daemon (issue 14): the real `voice-kiosk run`, the simulator
in its own process, and a simulated room between the virtual speaker and the virtual
microphone (`kiosk.audio.room_rig.EchoRoom`: the speaker's monitor, delayed, reverberated,
attenuated, with background noise, played into the microphone).

The room is set so the answer's echo reaches the microphone about as loud as the patient's
speech (the bedside box with speaker and microphone a hand apart): without a canceller the
simulator's voice detector takes the echo for the patient.

Only what `echo_mode: aec` does reliably is asserted here: the fallback to the gate when the
canceller cannot follow the echo. Voice barge-in and answers that never interrupt themselves
are measured by `bench/echo.py` over 20 answers each, beside `gate` and `none`: the canceller
does not meet those goals yet (about 2 answers in 20 interrupt themselves, 12 of 15 phrases
are heard), which is why `gate` is the default; a test asserting them would fail now and then
and prove nothing (see issue 14's note)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk.audio.room_rig import EchoRoom
from kiosk.sim.echo_scene import ANSWER_TEXT
from kiosk.sim.room import RoomModel
from kiosk.sim.voice import spoken
from tests.e2e.signals import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

RATE = 24000


def rms_dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return 10 * np.log10(np.mean(x * x) / 32768.0**2 + 1e-12)


def phrase(level_dbfs: float, text: str) -> np.ndarray:
    """The patient's words at an RMS level (of their voiced part). Real speech, as the
    answer is: a canceller meets speech, not test tones."""
    x = spoken(text, voice="en-us+f3", speed=150, pitch=70).astype(np.float64)
    voiced = x[np.abs(x) > 100]
    x *= 10 ** ((level_dbfs - rms_dbfs(voiced)) / 20)
    return np.clip(x, -32768, 32767).astype(np.int16)


def speaking_sim(sim, answer_s: float) -> None:
    """The simulator answers in real speech (espeak-ng), `answer_s` long."""
    sim.knobs.answer_voice = "speech"
    sim.knobs.answer_text = ANSWER_TEXT
    sim.knobs.answer_s = answer_s


def ask(kiosk, room: EchoRoom, level_dbfs: float = -24.0) -> None:
    """The patient asks a question through the room (the kiosk is listening)."""
    room.say(np.concatenate([phrase(level_dbfs, "Could I have some water?"),
                             np.zeros(RATE, np.int16)]))


def test_a_canceller_that_does_not_converge_falls_back_to_the_gate(start_kiosk, sim, rig,
                                                                     tmp_path):
    """The echo comes back a second late, beyond the 800 ms the canceller tracks (a reference
    that does not match what the microphone hears): after a few seconds of the answer the
    kiosk says once that the canceller did not converge, mutes the microphone while it speaks
    for the rest of the visit, and the metrics count the fallback."""
    textfile = tmp_path / "voice-kiosk.prom"
    late = RoomModel(delay_ms=1000.0, echo_gain_db=0.0, noise_dbfs=-65.0)
    with EchoRoom(rig, late) as room:
        kiosk = start_kiosk(visit={"idle_timeout_s": 20}, audio={"echo_mode": "aec"},
                            metrics={"textfile": str(textfile), "interval_s": 1})
        speaking_sim(sim, 6.0)
        kiosk.press()
        kiosk.wait_state("listening")
        ask(kiosk, room)
        kiosk.wait_state("speaking")
        line = kiosk.proc.wait_for_log(r"echo canceller did not converge", timeout_s=20)
        assert "audio.echo_mode: gate" in line.string  # what to do, in the same line
        reduced = re.search(r"echo reduced by ([-\d.]+) dB", line.string)
        assert reduced and float(reduced.group(1)) < 12.0, line.string

        def figures() -> dict[tuple[str, str], float]:
            found = {}
            if textfile.exists():
                for family in text_string_to_metric_families(textfile.read_text()):
                    for s in family.samples:
                        found[(s.name, s.labels.get("mode") or s.labels.get("state") or "")] \
                            = s.value
            return found

        wait_until(lambda: figures().get(("voice_kiosk_aec_fallbacks_total", "")) == 1, 10,
                   "the fallback in the metrics file")
        got = figures()
        assert got[("voice_kiosk_echo_mode", "aec")] == 1  # configured and running
        assert got[("voice_kiosk_aec_state", "failed")] == 1
        assert not math.isnan(got[("voice_kiosk_aec_erle_db", "")])
        # Not asserted: that this answer plays out. A 1 s late echo of the answer's end can
        # reach the service after the answer (the gate only covers the speaker's latency);
        # CI saw it once as "patient speaking". The README lists it under the limits.
        kiosk.systemd.wait_for("STATUS", "listening", timeout_s=20)
        assert kiosk.proc.log.count("did not converge") == 1
        assert room.error is None

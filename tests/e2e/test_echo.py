"""Echo cancellation through the daemon (issue 14): the real `voice-kiosk run`, the simulator
in its own process, and a simulated room between the virtual speaker and the virtual
microphone (`kiosk.audio.room_rig.EchoRoom`: the speaker's monitor, delayed, reverberated,
attenuated, with background noise, played into the microphone).

The room is set so the answer's echo reaches the microphone about as loud as the patient's
speech (the bedside box with speaker and microphone a hand apart): without a canceller the
simulator's voice detector takes the echo for the patient.

With `echo_mode: aec` the patient's voice stops an answer and the answer's own echo never
does; a canceller that cannot follow the echo falls back to the gate. `bench/echo.py` measures
the same over 20 answers each, beside `gate` and `none`."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk.audio.room_rig import EchoRoom
from kiosk.sim.echo_scene import ANSWER_TEXT, PHRASE_TEXT
from kiosk.sim.room import RoomModel
from kiosk.sim.voice import speech_like, spoken
from tests.e2e.signals import loud_runs, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.audio]

RATE = 24000
ROOM = RoomModel(delay_ms=60.0, echo_gain_db=0.0, noise_dbfs=-65.0)


def rms_dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return 10 * np.log10(np.mean(x * x) / 32768.0**2 + 1e-12)


@pytest.fixture
def room(rig) -> Iterator[EchoRoom]:
    with EchoRoom(rig, ROOM) as echo:
        yield echo
        assert echo.error is None


def phrase(level_dbfs: float, text: str = PHRASE_TEXT) -> np.ndarray:
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


def test_voice_barge_in_through_the_echo_with_the_canceller(start_kiosk, sim, rig, room):
    """The answer echoes into the microphone; the patient says a short phrase 6 dB under
    that echo in the middle of it: the service hears the phrase and the answer stops. (A
    first answer plays out before: until the canceller has converged once after start, the
    kiosk mutes the microphone while it speaks.)"""
    kiosk = start_kiosk(visit={"idle_timeout_s": 20}, audio={"echo_mode": "aec"})
    speaking_sim(sim, 4.0)
    kiosk.press()
    kiosk.wait_state("listening")
    conn = sim.last_connection
    ask(kiosk, room)
    kiosk.wait_state("speaking")
    _, status = kiosk.systemd.wait_for("STATUS", "listening", timeout_s=15)
    assert "answer finished" in status["STATUS"], status
    speaking_sim(sim, 8.0)
    sim.knobs.stream_speed = 1.5
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    ask(kiosk, room)
    kiosk.wait_state("speaking")
    # 2 s into the answer the patient talks, 6 dB under the answer's echo.
    wait_until(lambda: (runs := loud_runs(speaker.samples())) and
               runs[-1][1] - runs[-1][0] > 2 * RATE, 15, "2 s of the answer on the speaker")
    assert kiosk.systemd.states()[-1] == "speaking"  # it did not interrupt itself
    echo_level = rms_dbfs(speaker.samples()[-RATE:]) + ROOM.echo_gain_db
    said_at = time.monotonic()
    room.say(phrase(echo_level - 6.0))
    heard_at, status = kiosk.systemd.wait_for("STATUS", "listening", timeout_s=5)
    assert "patient speaking" in status["STATUS"], status  # the voice did it, not the end
    wait_until(lambda: conn.truncations, 5, "conversation.item.truncate")
    speaker.stop()
    # The goal (bench/echo.py judges it over 20 barge-ins) is 500 ms from the phrase's start
    # to silence; here only a bound that load cannot break, the figure is printed.
    print(f"phrase start -> answer stopped: {(heard_at - said_at) * 1000:.0f} ms")
    assert 0 < heard_at - said_at < 1.5


def test_the_answer_never_interrupts_itself_with_the_canceller(start_kiosk, sim, rig, room):
    """Four answers in a row, each echoing back as loud as a patient speaks: none is cut
    short, and all the service hears is the patient's four questions."""
    kiosk = start_kiosk(visit={"idle_timeout_s": 20}, audio={"echo_mode": "aec"})
    speaking_sim(sim, 3.0)
    kiosk.press()
    kiosk.wait_state("listening")
    conn = sim.last_connection
    for _ in range(4):
        ask(kiosk, room)
        kiosk.wait_state("speaking", timeout_s=15)
        _, status = kiosk.systemd.wait_for("STATUS", "listening", timeout_s=15)
        assert "answer finished" in status["STATUS"], status  # not "patient speaking"
    assert not conn.truncations, conn.truncations
    # What reached the service: the four questions (a question's words are < 0.3 s apart)
    # and nothing of the four answers in between.
    questions = loud_runs(conn.audio, threshold=1000, gap_s=0.3)
    assert len(questions) == 4, (questions, kiosk.proc.log[-3000:])
    assert "did not converge" not in kiosk.proc.log


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


def test_a_patient_talking_through_the_press_keeps_talking_to_the_service(start_kiosk, sim,
                                                                          rig):
    """No room between speaker and microphone (the speaker is not heard, so the canceller
    never converges) and a patient who is still talking when they press again: while the
    chime and its echo's reverberation may be in the microphone, what it hears is dropped,
    as the gate drops it. Sent as 0.65 s of digital silence, it ended the patient's turn:
    the service answered their first 0.1 s (bench/process.py's listening phase with aec)."""
    kiosk = start_kiosk(visit={"idle_timeout_s": 20}, audio={"echo_mode": "aec"})
    kiosk.press()
    kiosk.wait_state("listening")
    first = sim.last_connection
    feed = rig.play_into_mic(speech_like(20.0), RATE)
    try:
        wait_until(lambda: "input_audio_buffer.speech_started" in first.server_types(), 10,
                   "the patient heard in the first visit")
        kiosk.press()  # ends the visit, the patient talking on
        kiosk.wait_state("idle")
        kiosk.press()  # and a new one, at once
        kiosk.wait_state("listening")
        conn = sim.last_connection
        assert conn is not first
        wait_until(lambda: len(conn.audio) >= 2.5 * RATE, 10, "2.5 s of the patient")
        assert "input_audio_buffer.speech_stopped" not in conn.server_types(), \
            (conn.server_types(), kiosk.proc.log[-2000:])
        assert kiosk.systemd.states()[-1] == "listening", kiosk.systemd.states()
    finally:
        feed.stop()

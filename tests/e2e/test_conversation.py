"""A patient's visit, end to end: the real daemon, the simulator, virtual sound devices."""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args

import numpy as np
import pytest
from pydantic import Field, TypeAdapter

from tests.e2e.signals import (
    dominant_hz,
    longest_run,
    loud_runs,
    tone,
    utterance,
    wait_for_chime_end,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.audio]


def _client_event_adapter() -> TypeAdapter[Any]:
    from openai.types.realtime import RealtimeClientEvent

    members = get_args(get_args(RealtimeClientEvent)[0])
    return TypeAdapter(Annotated[Union[members], Field(discriminator="type")])  # noqa: UP007


def test_press_connects_and_streams_what_the_microphone_hears(start_kiosk, sim, rig):
    kiosk = start_kiosk()
    assert kiosk.systemd.states() == ["idle"]  # READY=1 with STATUS=idle ...: self-check ok
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    kiosk.press()
    kiosk.wait_state("connecting")
    kiosk.wait_state("listening")
    wait_for_chime_end(speaker)
    speaker.stop()

    grant_request = sim.gateway_requests[-1]
    assert grant_request.path == "/api/voice/realtime-session"
    assert grant_request.headers["x-api-key"] == sim.api_key  # the configured credential

    conn = sim.last_connection
    (update,) = conn.events_of("session.update")
    _client_event_adapter().validate_python(update)  # GA-shaped, strictly
    session = update["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert "openai-beta" not in conn.headers

    kiosk.say(np.concatenate([tone(440, 1.0, amplitude=0.3), np.zeros(24000, np.int16)]))
    kiosk.wait_state("thinking")
    heard = longest_run(conn.audio)
    assert len(heard) > 0.8 * 24000  # about the second of tone that was played
    assert dominant_hz(heard, 24000) == pytest.approx(440, rel=0.01)  # 24 kHz, not resampled
    appends = conn.events_of("input_audio_buffer.append")
    live = [len(a["audio"]) for a in appends[-20:]]
    assert max(set(live), key=live.count) == 6400  # 100 ms = 4800 bytes = 6400 base64 chars


def test_a_conversation_turn_is_heard_from_the_speaker(start_kiosk, sim, rig):
    kiosk = start_kiosk(visit={"idle_timeout_s": 3})
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    kiosk.press()
    kiosk.wait_state("listening")
    kiosk.say(utterance())
    kiosk.wait_state("thinking")
    kiosk.wait_state("speaking")
    kiosk.wait_state("listening")
    kiosk.wait_state("idle", timeout_s=10)  # idle timeout: no speech for 3 s
    played = speaker.stop()
    answer = longest_run(played)
    assert len(answer) == pytest.approx(1.5 * 24000, rel=0.15)
    assert dominant_hz(answer, 24000) == pytest.approx(sim.knobs.voice_f0_hz, rel=0.03)
    assert "no speech for 3 s" in kiosk.proc.log


def _start_long_answer(kiosk, sim, rig):
    sim.knobs.answer_s = 8.0
    sim.knobs.stream_speed = 1.5  # still faster than real time, but stays busy a while
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    kiosk.press()
    kiosk.wait_state("listening")
    kiosk.say(utterance())
    kiosk.wait_state("speaking")
    # Let a good second of the answer reach the speaker before interrupting it.
    wait_until(lambda: len(longest_run(speaker.samples())) > 24000 if len(
        speaker.samples()) else False, 10, "the answer on the speaker")
    return speaker


def _assert_silent_after_barge_in(kiosk, speaker, conn, sim):
    """The speaker played the answer only up to the cut, and the truncate says exactly that."""
    wait_until(lambda: conn.truncations, 5, "conversation.item.truncate")
    (cut,) = conn.truncations
    answer_items = {e["item_id"] for e in conn.events_of("response.output_audio.delta",
                                                          sent=True)}
    assert cut["item_id"] in answer_items
    assert 500 <= cut["audio_end_ms"] <= cut["sent_ms"]
    upto = len(speaker.samples())
    wait_until(lambda: len(speaker.samples()) > upto + 24000, 5, "a second more recording")
    played = speaker.stop()
    runs = [(a, b) for a, b in loud_runs(played) if b - a > 0.5 * 24000]  # not the cues
    assert runs, "the answer never reached the speaker"
    heard_ms = (runs[0][1] - runs[0][0]) / 24
    # What came out of the speaker stops where the kiosk says it cut the answer (the answer
    # itself is 8 s long), give or take a block and the fades.
    assert abs(heard_ms - cut["audio_end_ms"]) < 150, (heard_ms, cut, kiosk.proc.log[-2000:])


def test_button_barge_in_silences_the_answer_and_truncates_what_was_heard(start_kiosk, sim,
                                                                          rig):
    kiosk = start_kiosk()
    speaker = _start_long_answer(kiosk, sim, rig)
    kiosk.press()
    kiosk.wait_state("listening", timeout_s=5)
    conn = sim.last_connection
    _assert_silent_after_barge_in(kiosk, speaker, conn, sim)
    assert "answer interrupted by button" in kiosk.proc.log


def test_voice_barge_in_with_full_duplex(start_kiosk, sim, rig):
    kiosk = start_kiosk(audio={"echo_mode": "none"})
    speaker = _start_long_answer(kiosk, sim, rig)
    kiosk.say(utterance(tail_s=0.1))
    kiosk.wait_state("listening", timeout_s=5)
    conn = sim.last_connection
    _assert_silent_after_barge_in(kiosk, speaker, conn, sim)
    assert "response.cancel" not in conn.client_types()  # interrupt_response does it


def test_words_spoken_right_after_the_chime_survive_a_slow_connect(start_kiosk, sim, rig):
    """Press, hear the chime, talk at once: the kiosk is still connecting (slow gateway), yet
    every word reaches the server, in order."""
    kiosk = start_kiosk()
    sim.knobs.gateway_delay_s = 1.5
    speaker = rig.record_speaker()
    assert speaker.wait_ready(5)
    kiosk.press()
    kiosk.wait_state("connecting")
    wait_for_chime_end(speaker)
    speaker.stop()
    # Two tones one after the other: order matters as much as completeness.
    feed = rig.play_into_mic(np.concatenate([tone(500, 0.6, amplitude=0.3),
                                             tone(900, 0.6, amplitude=0.3),
                                             np.zeros(24000, np.int16)]), 24000)
    kiosk.wait_state("listening")
    assert "listening" not in kiosk.systemd.states()[:-1]  # it was connecting all along
    assert feed.wait(10)
    kiosk.wait_state("thinking")
    heard = longest_run(sim.last_connection.audio)
    assert len(heard) == pytest.approx(1.2 * 24000, rel=0.1), (
        loud_runs(sim.last_connection.audio), len(sim.last_connection.audio),
        kiosk.proc.log[-2500:])
    half = len(heard) // 2
    assert dominant_hz(heard[:half], 24000) == pytest.approx(500, rel=0.02)
    assert dominant_hz(heard[half:], 24000) == pytest.approx(900, rel=0.02)


def test_echo_gate_keeps_the_kiosks_own_voice_out_of_the_microphone(start_kiosk, sim, rig):
    """A plain speaker next to the microphone: the answer echoes back (a real PulseAudio
    loopback), yet the server never hears it and the answer is not cut short."""
    kiosk = start_kiosk(audio={"echo_mode": "gate"})
    rig.add_echo()
    try:
        kiosk.press()
        kiosk.wait_state("listening")
        conn = sim.last_connection
        kiosk.say(utterance())
        kiosk.wait_state("speaking")
        sent_at_answer = len(conn.audio)
        kiosk.wait_state("listening", timeout_s=10)
        during_answer = conn.audio[sent_at_answer:]
    finally:
        rig.remove_echo()
    assert not conn.truncations  # no barge-in by its own voice
    assert not loud_runs(during_answer), "the answer's echo reached the server"
    # The newest STATUS= (a WATCHDOG=1 ping may have come after it).
    status = [f["STATUS"] for _, f in kiosk.systemd.messages if "STATUS" in f][-1]
    assert "answer finished" in status

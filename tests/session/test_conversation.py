"""A patient's session end to end: real gateway and realtime clients against the simulator
over loopback sockets, with a fake audio port."""

from __future__ import annotations

import numpy as np

from kiosk.events import (
    AnswerFinished,
    AnswerStarted,
    SpeechStarted,
    SpeechStopped,
    VisitReady,
)
from kiosk.session.protocol import pcm_ms
from kiosk.sim import Simulator, silence, speech_like, utterance
from tests.session.fakes import FakeAudio, Posted


def test_press_speak_and_hear_the_answer(sim: Simulator, conversation, audio: FakeAudio,
                                         posted: Posted) -> None:
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    audio.capture.speak(utterance())
    posted.wait_for(SpeechStarted)
    posted.wait_for(SpeechStopped)
    started = posted.wait_for(AnswerStarted)
    finished = posted.wait_for(AnswerFinished)
    assert started.item_id == finished.item_id and started.item_id
    # The whole synthetic answer (1.5 s) reached the speaker, nothing dropped.
    assert audio.playback.played_ms(started.item_id) == 1500
    assert posted.names() == ["VisitReady", "SpeechStarted", "SpeechStopped",
                              "AnswerStarted", "AnswerFinished"]
    stats = conv.stats
    assert stats.turns == 1 and stats.reconnects == 0 and stats.barge_ins == 0
    assert stats.press_to_ready_s is not None and stats.press_to_ready_s > 0
    assert len(stats.answer_latencies_s) == 1 and len(stats.answer_start_latencies_s) == 1
    assert stats.answer_audio_ms == 1500
    # The service got a GA session.update with the kiosk's overrides.
    conn = sim.last_connection
    update = conn.events_of("session.update")[0]["session"]
    assert update["type"] == "realtime" and update["output_modalities"] == ["audio"]
    assert update["audio"]["input"]["turn_detection"]["interrupt_response"] is True
    assert "openai-beta" not in conn.headers
    assert conn.path.endswith("?model=gpt-realtime")


def test_audio_appends_are_frame_sized_once_live(sim: Simulator, conversation,
                                                 audio: FakeAudio, posted: Posted) -> None:
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.wait_for(lambda: sim.last_connection.session.get("instructions"))
    for _ in range(5):
        # One frame at a time, waiting until it was sent: the live path. Counted before the
        # frame is spoken: the uplink may send it before this thread looks again.
        n = len(sim.last_connection.events_of("input_audio_buffer.append"))
        audio.capture.speak(silence(0.02))
        sim.wait_for(lambda n=n: len(sim.last_connection.events_of(
            "input_audio_buffer.append")) > n)
    appends = sim.last_connection.events_of("input_audio_buffer.append")
    assert all(len(e["audio"]) == 1280 for e in appends[-5:])  # 960 bytes = 20 ms, base64
    # The counter moves just after the send returns, so wait for it rather than race it.
    sim.wait_for(lambda: conv.stats.audio_sent_ms == 100)


def test_words_spoken_while_connecting_arrive_in_order(sim: Simulator, conversation,
                                                       audio: FakeAudio, posted: Posted) -> None:
    sim.knobs.gateway_delay_s = 0.6  # a slow gateway: the patient talks before we are connected
    conv = conversation()
    conv.start("s1")
    sim.wait_for(lambda: audio.capture.armed)  # the loop arms the microphone at the press
    words = utterance(speech_s=1.0, lead_s=0.1, tail_s=0.7)
    audio.capture.speak(words)  # all of it before the link exists
    assert not [e for e in posted.events if isinstance(e, VisitReady)]
    posted.wait_for(VisitReady)
    posted.wait_for(SpeechStopped)
    sim.wait_for(lambda: len(sim.last_connection.audio) >= len(words))
    received = sim.last_connection.audio
    assert np.array_equal(received[:len(words)], words)
    sim.wait_for(lambda: conv.stats.backlog_ms == pcm_ms(len(words) * 2))


def test_start_never_blocks_and_end_is_quick_and_idempotent(sim: Simulator, conversation,
                                                           audio: FakeAudio,
                                                           posted: Posted) -> None:
    import time
    sim.knobs.gateway_delay_s = 2.0
    conv = conversation()
    t0 = time.monotonic()
    conv.start("s1")
    assert time.monotonic() - t0 < 0.05  # posts and returns
    sim.wait_for(lambda: audio.capture.armed)  # armed by the loop at once, while connecting
    t1 = time.monotonic()
    conv.end("long press")
    conv.end("again")
    assert time.monotonic() - t1 < 0.05
    sim.wait_for(lambda: not audio.capture.armed, timeout_s=1.0)
    sim.knobs.gateway_delay_s = 0.0
    conv.start("s2")  # the next press works
    posted.wait_for(VisitReady)


def test_voice_barge_in_truncates_at_what_was_played(sim: Simulator, conversation,
                                                     audio: FakeAudio, posted: Posted) -> None:
    sim.knobs.answer_s = 4.0
    conv = conversation()  # echo_mode none: full duplex, the voice can barge in
    conv.start("s1")
    posted.wait_for(VisitReady)
    audio.capture.speak(utterance())
    started = posted.wait_for(AnswerStarted)
    # Wait until some of the answer was heard, then talk over it.
    sim.wait_for(lambda: audio.playback.played_ms(started.item_id) >= 300)
    audio.capture.speak(speech_like(0.6))
    finished = posted.wait_for(AnswerFinished)
    assert finished.item_id == started.item_id
    conn = sim.last_connection
    truncate = sim.wait_for(lambda: conn.events_of("conversation.item.truncate"))[0]
    flushed_item, played_ms = audio.playback.flushes[0]
    assert truncate["item_id"] == started.item_id == flushed_item
    assert truncate["content_index"] == 0
    assert truncate["audio_end_ms"] == played_ms
    assert played_ms <= audio.playback.written_ms(started.item_id)
    accepted = sim.wait_for(lambda: conn.truncations)[0]
    assert accepted["audio_end_ms"] <= accepted["sent_ms"]
    # interrupt_response on: the server cancelled by itself, the kiosk sent no cancel.
    sim.wait_for(lambda: conn.cancelled_responses)
    assert not conn.events_of("response.cancel")
    assert conv.stats.barge_ins == 1
    # Late deltas of the cancelled answer never reach the speaker.
    assert audio.playback.played_ms(started.item_id) == played_ms
    assert not [e for e in conn.server_events if e["type"] == "error"]


def test_barge_in_without_interrupt_response_sends_cancel(sim: Simulator, conversation,
                                                          audio: FakeAudio,
                                                          posted: Posted) -> None:
    sim.knobs.answer_s = 4.0
    sim.knobs.stream_speed = 1.5
    conv = conversation(realtime={"interrupt_response": False})
    conv.start("s1")
    posted.wait_for(VisitReady)
    audio.capture.speak(utterance())
    started = posted.wait_for(AnswerStarted)
    sim.wait_for(lambda: audio.playback.played_ms(started.item_id) >= 200)
    audio.capture.speak(speech_like(0.5))
    conn = sim.last_connection
    cancel = sim.wait_for(lambda: conn.events_of("response.cancel"))[0]
    assert cancel["response_id"].startswith("resp_")
    sim.wait_for(lambda: conn.cancelled_responses)
    assert conn.session["audio"]["input"]["turn_detection"]["interrupt_response"] is False


def test_button_interrupt_stops_the_answer(sim: Simulator, conversation, audio: FakeAudio,
                                           posted: Posted) -> None:
    sim.knobs.answer_s = 4.0
    sim.knobs.stream_speed = 1.5  # still streaming when the button is pressed
    conv = conversation(audio={"echo_mode": "gate"})
    conv.start("s1")
    posted.wait_for(VisitReady)
    audio.capture.speak(utterance())
    started = posted.wait_for(AnswerStarted)
    sim.wait_for(lambda: audio.playback.played_ms(started.item_id) >= 200)
    conv.interrupt()
    posted.wait_for(AnswerFinished)
    conn = sim.last_connection
    truncate = sim.wait_for(lambda: conn.events_of("conversation.item.truncate"))[0]
    assert truncate["audio_end_ms"] == audio.playback.flushes[0][1]
    # interrupt_response is on: no response.cancel; the rest of the answer still streams in
    # and is dropped, never played.
    sim.wait_for(lambda: "response.done" in conn.server_types(), timeout_s=10)
    assert not conn.events_of("response.cancel")
    assert conv.stats.dropped_deltas > 0
    assert len(audio.playback.flushes) == 1 and not audio.playback.busy


def test_two_turns_in_one_session(sim: Simulator, conversation, audio: FakeAudio,
                                  posted: Posted) -> None:
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    for turn in (1, 2):
        audio.capture.speak(utterance())
        posted.wait_for(AnswerFinished, count=turn)
    assert conv.stats.turns == 2
    assert len(sim.connections) == 1


def test_each_press_starts_a_new_conversation(sim: Simulator, conversation, audio: FakeAudio,
                                              posted: Posted) -> None:
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    conv.end("done")
    conv.start("s2")
    posted.wait_for(VisitReady, count=2)
    first, second = [r.body for r in sim.gateway_requests
                     if r.path == "/api/voice/realtime-session"]
    assert "conversation_id" not in first and "conversation_id" not in second


def test_a_pinned_conversation_is_always_continued(sim: Simulator, conversation,
                                                   posted: Posted) -> None:
    conv = conversation(gateway={"conversation_id": "bed-12"})
    conv.start("s1")
    posted.wait_for(VisitReady)
    assert sim.gateway_requests[-1].body == {"conversation_id": "bed-12"}


def test_replay_buffer_is_bounded_and_trimmed_by_commits() -> None:
    from kiosk.session.replay import ReplayBuffer
    replay = ReplayBuffer(max_ms=100)
    frame = b"\x01\x00" * 480  # 20 ms
    for _ in range(20):
        replay.sent(frame)
    assert len(replay.take()) == 5  # only the newest 100 ms are kept
    for _ in range(5):
        replay.sent(frame)
    replay.committed(60)  # the service closed a turn at 60 ms: the first 3 frames are a turn
    assert len(replay.pending_turn) == 3  # kept until its answer starts
    assert len(replay.take()) == 2
    assert replay.take() == []
    replay.answered()
    assert replay.pending_turn == []


def test_a_turn_ending_inside_a_frame_splits_it() -> None:
    """100 ms frames: the service's turn ends in the middle of one. Its head belongs to the
    question (asked again whole), its tail is all a new link should get again."""
    from kiosk.session.replay import ReplayBuffer
    replay = ReplayBuffer(max_ms=2000)
    speech, silence = b"\x10\x27" * 2400, b"\x00\x00" * 2400  # 100 ms each
    for frame in (speech, speech, speech[:2400] + silence[2400:], silence):
        replay.sent(frame)
    replay.committed(250)
    assert b"".join(replay.pending_turn) == speech * 2 + speech[:2400]
    rest = replay.take()
    assert b"".join(rest) == silence[2400:] + silence  # no speech sent twice

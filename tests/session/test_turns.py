"""The answer side of a visit, driven event by event (no sockets): what the service's events
do to the speaker and the controller, and what a link's end means."""

from __future__ import annotations

from typing import Any

from kiosk.events import AnswerFinished, AnswerStarted
from kiosk.session.ledger import VisitStats
from kiosk.session.replay import ReplayBuffer
from kiosk.settings import AudioSettings, Settings
from kiosk.turns import Turns
from kiosk.visit import close_outcome
from tests.session.fakes import FakeAudio, Posted


def b64(pcm: bytes) -> str:
    from kiosk.session.protocol import encode_pcm16

    return encode_pcm16(pcm)


class Wire:
    """Feeds server events to Turns and records what it sends back."""

    def __init__(self, audio: FakeAudio, posted: Posted) -> None:
        self.sent: list[dict[str, Any]] = []
        self.stats = VisitStats()
        self.replay = ReplayBuffer(10_000)
        self.turns = Turns(Settings(audio=AudioSettings(echo_mode="gate")), audio.playback,
                           self.replay, self.stats, posted)
        audio.playback.set_listener(self.turns.on_playback)

    def __call__(self, kind: str, **fields: Any) -> None:
        self.turns.on_server_event({"type": kind, **fields}, self.sent.append)

    def delta(self, response: str, item: str, pcm: bytes) -> None:
        self("response.output_audio.delta", response_id=response, item_id=item,
             output_index=0, content_index=0, delta=b64(pcm))


def test_a_response_cancelled_by_the_server_still_plays_out(audio: FakeAudio,
                                                           posted: Posted) -> None:
    wire = Wire(audio, posted)
    wire("input_audio_buffer.speech_stopped", item_id="u1", audio_end_ms=900)
    wire("response.created", response={"id": "r1"})
    wire.delta("r1", "a1", b"\x10\x00" * 2400)  # 100 ms, then cancelled
    wire("response.done", response={"id": "r1", "status": "cancelled"})
    assert posted.wait_for(AnswerStarted).item_id == "a1"
    assert posted.wait_for(AnswerFinished).item_id == "a1"
    assert audio.playback.played_ms("a1") == 100
    assert wire.stats.answer_latencies_s and wire.stats.answer_audio_ms == 100


def test_a_silent_response_finishes_the_answer_at_once(audio: FakeAudio,
                                                       posted: Posted) -> None:
    wire = Wire(audio, posted)
    wire("response.created", response={"id": "r1"})
    wire("response.done", response={"id": "r1", "status": "cancelled"})
    assert posted.wait_for(AnswerFinished).item_id is None


def test_deltas_of_a_barged_in_response_are_dropped(audio: FakeAudio, posted: Posted) -> None:
    wire = Wire(audio, posted)
    wire("response.created", response={"id": "r1"})
    wire.delta("r1", "a1", b"\x10\x00" * 480)
    wire.turns.barge_in(by_button=True, send=wire.sent.append)
    assert [e["type"] for e in wire.sent] == ["conversation.item.truncate"]
    assert wire.sent[0]["item_id"] == "a1" and wire.sent[0]["audio_end_ms"] <= 20
    wire.delta("r1", "a1", b"\x10\x00" * 480)
    wire("response.output_audio.done", response_id="r1", item_id="a1")
    assert wire.stats.dropped_deltas == 1
    assert audio.playback.written_ms("a1") == 20


def test_speech_over_a_playing_answer_is_a_barge_in(audio: FakeAudio, posted: Posted) -> None:
    wire = Wire(audio, posted)
    wire("response.created", response={"id": "r1"})
    wire.delta("r1", "a1", b"\x10\x00" * 24000)
    wire("input_audio_buffer.speech_started", item_id="u2", audio_start_ms=1000)
    assert wire.stats.barge_ins == 1 and audio.playback.flushes


def test_a_closed_question_is_kept_until_its_answer_starts(audio: FakeAudio,
                                                           posted: Posted) -> None:
    wire = Wire(audio, posted)
    for _ in range(10):
        wire.replay.sent(b"\x01\x00" * 480)  # 200 ms said
    wire("input_audio_buffer.speech_stopped", item_id="u1", audio_end_ms=200)
    assert len(wire.replay.pending_turn) == 10  # asked again if the link dies now
    wire("response.created", response={"id": "r1"})
    wire.delta("r1", "a1", b"\x10\x00" * 480)
    assert wire.replay.pending_turn == []  # answered


def test_an_abandoned_turn_cancels_the_late_answer(audio: FakeAudio, posted: Posted) -> None:
    wire = Wire(audio, posted)
    wire("input_audio_buffer.speech_stopped", item_id="u1", audio_end_ms=0)
    wire("response.created", response={"id": "r1"})
    wire.turns.abandon(send=wire.sent.append)
    assert wire.sent[-1]["type"] == "response.cancel"
    wire.delta("r1", "a1", b"\x10\x00" * 480)
    assert wire.stats.dropped_deltas == 1 and audio.playback.written_ms("a1") == 0


def test_what_a_close_means() -> None:
    assert close_outcome(1001, False, None).reason == "session_expired"
    assert close_outcome(None, True, None).reason == "session_expired"
    assert close_outcome(1000, False, None).reason == "closed by the service"
    fault = close_outcome(4000, False, ("beta_api_shape_disabled", "gone"))
    assert fault.kind == "protocol" and "beta_api_shape_disabled" in fault.message
    assert close_outcome(3000, False, None) is None  # reconnect with a fresh token
    assert close_outcome(1009, False, None) is None  # a message too big: reopen
    assert close_outcome(None, False, None) is None  # lost link: reconnect

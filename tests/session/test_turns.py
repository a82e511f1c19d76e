"""Turn bookkeeping and the server-event bridge, driven directly (no sockets needed)."""

from __future__ import annotations

from kiosk.events import AnswerFinished, AnswerStarted, Event
from kiosk.session.run import ServerEvents, SessionRun
from kiosk.session.turns import close_outcome
from kiosk.settings import AudioSettings, Settings
from tests.session.fakes import FakeAudio, Posted


class Owner:
    def __init__(self, audio: FakeAudio, posted: Posted) -> None:
        self.settings = Settings(audio=AudioSettings(echo_mode="gate"))
        self.audio = audio
        self.posted = posted
        self.barge_ins = 0

    def deliver(self, run: SessionRun, event: Event) -> None:
        self.posted(event)

    def barge_in(self, run: SessionRun, by_button: bool) -> None:
        self.barge_ins += 1


def bridge(audio: FakeAudio, posted: Posted) -> tuple[ServerEvents, SessionRun]:
    run = SessionRun("s1")
    owner = Owner(audio, posted)
    audio.playback.set_listener(
        lambda kind, item: posted(AnswerStarted(item) if kind == "started"
                                  else AnswerFinished(item)))
    return ServerEvents(owner, run), run


def test_a_response_cancelled_by_the_server_still_plays_out(audio: FakeAudio,
                                                           posted: Posted) -> None:
    events, run = bridge(audio, posted)
    events.on_speech_stopped("u1", 900)
    events.on_response_created("r1")
    events.on_audio_delta("r1", "a1", b"\x10\x00" * 2400)  # 100 ms, then cancelled
    events.on_response_done("r1", "cancelled")
    assert posted.wait_for(AnswerFinished).item_id == "a1"
    assert audio.playback.played_ms("a1") == 100
    assert run.stats.answer_latencies_s and run.stats.answer_audio_ms == 100


def test_a_silent_response_finishes_the_answer_at_once(audio: FakeAudio,
                                                       posted: Posted) -> None:
    events, _ = bridge(audio, posted)
    events.on_response_created("r1")
    events.on_response_done("r1", "cancelled")
    assert posted.wait_for(AnswerFinished).item_id is None


def test_deltas_of_a_barged_in_response_are_dropped(audio: FakeAudio, posted: Posted) -> None:
    events, run = bridge(audio, posted)
    events.on_response_created("r1")
    events.on_audio_delta("r1", "a1", b"\x10\x00" * 480)
    item, response, received_ms = run.tracker.begin_barge_in()
    assert (item, response, received_ms) == ("a1", "r1", 20)
    events.on_audio_delta("r1", "a1", b"\x10\x00" * 480)
    events.on_audio_done("r1", "a1")
    assert run.stats.dropped_deltas == 1
    assert audio.playback.written_ms("a1") == 20


def test_speech_over_a_playing_answer_is_a_barge_in(audio: FakeAudio, posted: Posted) -> None:
    events, run = bridge(audio, posted)
    events.on_response_created("r1")
    events.on_audio_delta("r1", "a1", b"\x10\x00" * 24000)
    events.on_speech_started("u2", 1000)
    assert events.conv.barge_ins == 1


def test_what_a_close_means() -> None:
    assert close_outcome(1001, False, None).reason == "session_expired"
    assert close_outcome(None, True, None).reason == "session_expired"
    assert close_outcome(1000, False, None).reason == "closed by the service"
    fault = close_outcome(4000, False, ("beta_api_shape_disabled", "gone"))
    assert fault.kind == "protocol" and "beta_api_shape_disabled" in fault.message
    assert close_outcome(3000, False, None) is None  # reconnect with a fresh token
    assert close_outcome(None, False, None) is None  # lost link: reconnect

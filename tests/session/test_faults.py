"""Every fault knob of the simulator against the real clients: the right event reaches the
controller, one clear log line tells IT staff what to do, and the next press works again."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kiosk.events import AnswerFinished, Fault, SpeechStopped, VisitEnded, VisitReady
from kiosk.sim import Simulator, utterance
from tests.harness import ManualClock
from tests.session.fakes import FakeAudio, Posted


def error_lines(logs: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in logs.records if r.levelno >= logging.ERROR]


def warnings(logs: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]


def recovers(conv, posted: Posted, audio: FakeAudio) -> None:
    """The next press gives a working session: ready, a turn, an answer."""
    ready, answers = len(posted.of(VisitReady)), len(posted.of(AnswerFinished))
    conv.end("test: next press")
    conv.start("again")
    posted.wait_for(VisitReady, count=ready + 1)
    audio.capture.speak(utterance())
    posted.wait_for(AnswerFinished, count=answers + 1)


def session_requests(sim: Simulator) -> list:
    return [r for r in sim.gateway_requests if r.path.endswith("realtime-session")]


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_credential_fails_the_press_at_once(sim: Simulator, conversation,
                                                       audio: FakeAudio, posted: Posted, logs,
                                                       key_file, status: int) -> None:
    sim.knobs.gateway_status = status
    conv = conversation()
    conv.start("s1")
    fault = posted.wait_for(Fault)
    assert fault.kind == "auth" and str(status) in fault.message
    assert "gateway.api_key_file" in fault.message and str(key_file) in fault.message
    assert fault.ends_visit
    assert len(session_requests(sim)) == 1  # waiting cannot fix a wrong key: no retries
    assert any(str(status) in line for line in error_lines(logs))
    # A new key in the file is tried at once.
    key_file.write_text(sim.create_api_key() + "\n")
    sim.knobs.gateway_status = None
    recovers(conv, posted, audio)


def test_after_a_401_a_press_asks_the_gateway_again_at_once(sim: Simulator, conversation,
                                                          audio: FakeAudio,
                                                          posted: Posted) -> None:
    # The credential was fixed on the gateway's side (the key file did not change): the hold
    # meant for automatic retries must not swallow the patient's next press.
    sim.knobs.gateway_status = 401
    conv = conversation()  # auth_retry_s 10 s
    conv.start("s1")
    posted.wait_for(Fault)
    sim.knobs.gateway_status = None
    before = len(session_requests(sim))
    recovers(conv, posted, audio)
    assert len(session_requests(sim)) == before + 1


@pytest.mark.parametrize("status,words", [(500, "realtime service is enabled"),
                                          (503, "not enabled or not configured")])
def test_an_unavailable_gateway_is_retried_until_the_give_up_time(
        sim: Simulator, conversation, audio: FakeAudio, posted: Posted, logs, status: int,
        words: str) -> None:
    sim.knobs.gateway_status = status
    conv = conversation()  # give_up_s 1 s, retries from 0.05 s
    conv.start("s1")
    fault = posted.wait_for(Fault, timeout_s=5)
    assert fault.kind == "unavailable" and str(status) in fault.message and words in fault.message
    assert "gave up after" in fault.message
    assert len(session_requests(sim)) >= 3
    assert any("trying again in" in r.getMessage() for r in logs.records)
    sim.knobs.gateway_status = None
    recovers(conv, posted, audio)


def test_one_503_then_success_in_the_same_press(sim: Simulator, conversation,
                                                audio: FakeAudio, posted: Posted) -> None:
    sim.knobs.gateway_status, sim.knobs.gateway_fail_count = 503, 1
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    assert not posted.of(Fault)
    assert [r.status for r in session_requests(sim)] == [503, 200]
    audio.capture.speak(utterance())
    posted.wait_for(AnswerFinished)


def test_429_without_retry_after_is_retried_in_the_same_press(sim: Simulator, conversation,
                                                             audio: FakeAudio,
                                                             posted: Posted) -> None:
    # The real gateway's rate limiter: no Retry-After header, no `detail` key.
    sim.knobs.gateway_status, sim.knobs.gateway_fail_count = 429, 2
    sim.knobs.retry_after_s = None
    conv = conversation(gateway={"give_up_s": 5.0})
    conv.start("s1")
    posted.wait_for(VisitReady)
    assert [r.status for r in session_requests(sim)] == [429, 429, 200]
    assert not posted.of(Fault)


def test_a_retry_after_beyond_the_give_up_time_fails_and_is_honoured(
        sim: Simulator, conversation, audio: FakeAudio, posted: Posted, logs) -> None:
    sim.knobs.gateway_status, sim.knobs.retry_after_s = 429, 30
    clock = ManualClock()
    conv = conversation(gateway_clock=clock)
    conv.start("s1")
    fault = posted.wait_for(Fault)
    assert fault.kind == "unavailable" and "429" in fault.message
    assert "asks to wait 30 s" in fault.message
    assert any("429" in line for line in error_lines(logs))
    sim.knobs.gateway_status = None
    # Pressing again within Retry-After does not hit the gateway.
    requests = len(sim.gateway_requests)
    clock.advance(29)
    conv.end("x")
    conv.start("s2")
    second = posted.wait_for(Fault, count=2)
    assert "429" in second.message
    assert len(sim.gateway_requests) == requests
    clock.advance(2)
    recovers(conv, posted, audio)


def test_slow_gateway_times_out(sim: Simulator, conversation, audio: FakeAudio,
                                posted: Posted, logs) -> None:
    sim.knobs.gateway_delay_s = 2.0
    conv = conversation(gateway={"timeout_s": 0.5})
    conv.start("s1")
    fault = posted.wait_for(Fault, timeout_s=5)
    assert fault.kind == "network" and "gateway.timeout_s" in fault.message
    assert any("did not answer" in line for line in error_lines(logs))
    sim.knobs.gateway_delay_s = 0.0
    recovers(conv, posted, audio)


def test_a_gateway_slower_than_the_old_timeout_still_gives_a_visit(
        sim: Simulator, conversation, audio: FakeAudio, posted: Posted) -> None:
    # The real gateway needs up to 30 s when the speech service is slow; the defaults wait
    # 35 s (gateway.timeout_s). Here: 2 s against a 3 s timeout, as a scaled-down check.
    sim.knobs.gateway_delay_s = 2.0
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady, timeout_s=10)
    assert not posted.of(Fault)


@pytest.mark.parametrize("form,words", [("not_json", "not JSON"),
                                        ("missing_fields", "neither auth.token nor api_key")])
def test_malformed_gateway_answer(sim: Simulator, conversation, audio: FakeAudio,
                                  posted: Posted, logs, form: str, words: str) -> None:
    sim.knobs.gateway_malformed = form
    conv = conversation()
    conv.start("s1")
    fault = posted.wait_for(Fault)
    assert fault.kind == "protocol" and words in fault.message
    assert any(words in line for line in error_lines(logs))
    sim.knobs.gateway_malformed = None
    recovers(conv, posted, audio)


def test_dropped_link_reconnects_and_keeps_the_conversation(sim: Simulator, conversation,
                                                             audio: FakeAudio, posted: Posted,
                                                             logs) -> None:
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.knobs.drop_after_events = 5  # session.update + 4 appends, then the link dies
    audio.capture.speak(utterance())
    posted.wait_for(VisitReady, count=2)
    posted.wait_for(AnswerFinished)
    assert conv.stats.reconnects == 1
    first, second = [r for r in sim.gateway_requests if r.path.endswith("realtime-session")]
    assert "conversation_id" not in first.body
    assert second.body["conversation_id"] == conv.gateway.last_grant.conversation_id
    assert any("realtime link lost" in w and "reconnecting" in w for w in warnings(logs))
    # No word lost across the drop: the new connection got the whole uncommitted utterance.
    words = utterance()
    assert np.array_equal(sim.connections[1].audio[:len(words)], words)
    assert conv.stats.replayed_ms > 0


def test_reconnect_gives_up_after_the_limit(sim: Simulator, conversation, audio: FakeAudio,
                                            posted: Posted, logs) -> None:
    conv = conversation(realtime={"reconnect_give_up_s": 1.0})
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.knobs.gateway_status = 503
    sim.inject("drop")
    fault = posted.wait_for(Fault)
    assert fault.kind == "unavailable" and "not restored after" in fault.message
    assert "503" in fault.message
    assert any("not restored" in line for line in error_lines(logs))
    sim.knobs.gateway_status = None
    recovers(conv, posted, audio)


def test_session_cap_ends_the_session_cleanly(sim: Simulator, conversation, audio: FakeAudio,
                                              posted: Posted, logs) -> None:
    sim.knobs.session_max_s = 0.5
    conv = conversation()
    conv.start("s1")
    ended = posted.wait_for(VisitEnded)
    assert ended.reason == "session_expired"
    assert not posted.of(Fault)
    assert sim.connections[0].close_code == 1001
    assert any("time limit" in r.getMessage() for r in logs.records)
    assert not audio.capture.armed
    sim.knobs.session_max_s = None
    recovers(conv, posted, audio)


def test_bad_token_close_3000_reconnects_with_a_fresh_grant(sim: Simulator, conversation,
                                                            audio: FakeAudio,
                                                            posted: Posted) -> None:
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.expire_tokens()
    sim.inject("error", code="invalid_api_key", close_code=3000)
    posted.wait_for(VisitReady, count=2)
    assert conv.stats.reconnects == 1
    assert sim.connections[0].token != sim.connections[1].token
    audio.capture.speak(utterance())
    posted.wait_for(AnswerFinished)


def test_beta_shape_rejection_is_a_protocol_fault(sim: Simulator, conversation,
                                                  audio: FakeAudio, posted: Posted,
                                                  logs) -> None:
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.inject("error", code="beta_api_shape_disabled", close_code=4000)
    fault = posted.wait_for(Fault)
    assert fault.kind == "protocol" and "4000" in fault.message
    assert "beta_api_shape_disabled" in fault.message
    recovers(conv, posted, audio)


@pytest.mark.parametrize("code,level", [("server_error", logging.WARNING),
                                        ("invalid_value", logging.WARNING),
                                        ("response_cancel_not_active", logging.DEBUG),
                                        ("input_audio_buffer_commit_empty", logging.DEBUG)])
def test_error_events_leave_the_session_usable(sim: Simulator, conversation, audio: FakeAudio,
                                               posted: Posted, logs, code: str,
                                               level: int) -> None:
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.inject("error", code=code)
    sim.wait_for(lambda: any(code in r.getMessage() for r in logs.records))
    line = next(r for r in logs.records if code in r.getMessage())
    assert line.levelno == level
    audio.capture.speak(utterance())
    posted.wait_for(AnswerFinished)
    assert not posted.of(Fault)


def test_an_oversized_message_closes_the_link_before_buffering_and_it_reopens(
        sim: Simulator, conversation, audio: FakeAudio, posted: Posted, logs) -> None:
    conv = conversation(realtime={"max_message_kib": 64})
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.inject("oversized", size_kib=100)
    posted.wait_for(VisitReady, count=2)  # a new link
    assert any("max_message_kib" in w and "reconnecting" in w for w in warnings(logs))
    audio.capture.speak(utterance())
    finished = posted.wait_for(AnswerFinished)
    assert audio.playback.played_ms(finished.item_id) == 1500
    assert not posted.of(Fault)


@pytest.mark.parametrize("kind,words", [("bad_json", "not JSON"),
                                        ("bad_base64", "not valid base64"),
                                        ("odd_bytes", "odd byte count"),
                                        ("binary", "binary frame"),
                                        ("unknown_event", None)])
def test_bad_messages_are_dropped_not_fatal(sim: Simulator, conversation, audio: FakeAudio,
                                            posted: Posted, logs, kind: str,
                                            words: str | None) -> None:
    conv = conversation(realtime={"max_message_kib": 64})
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.inject(kind, size_kib=100)
    if words:
        sim.wait_for(lambda: any(words in w for w in warnings(logs)))
    audio.capture.speak(utterance())
    posted.wait_for(AnswerFinished)
    assert not posted.of(Fault)
    assert len(sim.connections) == 1
    assert audio.playback.played_ms(posted.of(AnswerFinished)[0].item_id) == 1500
    conv.end("done")
    sim.wait_for(lambda: conv.stats.ended_by)
    assert conv.stats.dropped_messages == (1 if words else 0)


def test_old_server_with_beta_event_names(sim: Simulator, conversation, audio: FakeAudio,
                                          posted: Posted) -> None:
    sim.knobs.beta_names = True
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    audio.capture.speak(utterance())
    posted.wait_for(SpeechStopped)
    finished = posted.wait_for(AnswerFinished)
    assert audio.playback.played_ms(finished.item_id) == 1500


def test_early_gateway_response_form(sim: Simulator, conversation, audio: FakeAudio,
                                     posted: Posted) -> None:
    sim.knobs.response_form = "early"
    conv = conversation()
    conv.start("s1")
    posted.wait_for(VisitReady)
    assert conv.gateway.last_grant.token_kind == "api_key"
    audio.capture.speak(utterance())
    posted.wait_for(AnswerFinished)

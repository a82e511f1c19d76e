"""kiosk.language and realtime.speed on the wire: the gateway's body, the session.update the
kiosk sends (validated against the official openai types), and what the simulator makes of
it, over real sockets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.conversation import Conversation
from kiosk.events import AnswerFinished, AnswerStarted, VisitReady
from kiosk.session import protocol as p
from kiosk.settings import KioskSettings, RealtimeSettings
from kiosk.sim import Simulator, utterance
from kiosk.sim.gateway_server import VOICE_CONFIG
from tests.session.conftest import make_settings
from tests.session.fakes import FakeAudio, Posted
from tests.session.test_wire_types import CLIENT, SERVER, check

INSTRUCTIONS = RealtimeSettings().instructions


def answer_ms(sim: Simulator, audio: FakeAudio, posted: Posted, language: str | None,
              speed: float, key_file: Path) -> tuple[int, Conversation]:
    settings = replace(make_settings(sim, key_file, realtime={"speed": speed}),
                       kiosk=KioskSettings(language=language))
    conv = Conversation(settings, audio, posted)
    conv.start("v1")
    posted.wait_for(VisitReady)
    audio.capture.speak(utterance())
    started = posted.wait_for(AnswerStarted)
    posted.wait_for(AnswerFinished)
    return audio.playback.written_ms(started.item_id), conv


def test_language_and_speed_reach_the_gateway_and_the_session(
        sim: Simulator, key_file: Path, audio: FakeAudio, posted: Posted) -> None:
    sim.knobs.answer_s = 1.0
    written, conv = answer_ms(sim, audio, posted, "pt-BR", 0.8, key_file)
    try:
        assert sim.gateway_requests[-1].body["language"] == "pt"  # the gateway's own form
        conn = sim.last_connection
        (update,) = [e for e in conn.client_events if e["type"] == "session.update"]
        session = update["session"]
        assert session["audio"]["input"]["transcription"] == {"model": "whisper-1",
                                                              "language": "pt"}
        assert session["instructions"] == (INSTRUCTIONS + "\n\nAlways answer in Portuguese "
                                                          "(pt-BR).")
        assert session["audio"]["output"]["speed"] == 0.8
        (updated,) = [e for e in conn.server_events if e["type"] == "session.updated"]
        assert updated["session"]["audio"]["output"]["speed"] == 0.8  # echoed
        check(CLIENT, conn.client_events)
        check(SERVER, conn.server_events)
        # The simulator speaks slower, as the service does: 1 s of answer takes 1.25 s.
        assert abs(written - 1250) <= 50, written
    finally:
        conv.close()


def test_without_a_language_nothing_is_added(sim: Simulator, key_file: Path,
                                              audio: FakeAudio, posted: Posted) -> None:
    sim.knobs.answer_s = 1.0
    written, conv = answer_ms(sim, audio, posted, None, 1.0, key_file)
    try:
        assert "language" not in sim.gateway_requests[-1].body
        (update,) = [e for e in sim.last_connection.client_events
                     if e["type"] == "session.update"]
        assert update["session"]["instructions"] == INSTRUCTIONS
        assert "language" not in update["session"]["audio"]["input"]["transcription"]
        assert abs(written - 1000) <= 50, written
    finally:
        conv.close()


def test_the_kiosk_language_wins_over_the_gateway_default() -> None:
    """The real gateway puts its own "en" in voice_config; a kiosk set to de transcribes
    German, and a gateway that ignores the request changes nothing."""
    event = p.session_update({**VOICE_CONFIG, "language": "en"}, RealtimeSettings(), "de")
    assert event["session"]["audio"]["input"]["transcription"]["language"] == "de"
    kept = p.session_update({**VOICE_CONFIG, "language": "en"}, RealtimeSettings())
    assert kept["session"]["audio"]["input"]["transcription"]["language"] == "en"
    bare = p.session_update({}, RealtimeSettings(instructions=""), "ar")
    assert bare["session"]["instructions"] == "Always answer in Arabic."
    assert "transcription" not in bare["session"]["audio"]["input"]  # none asked for
    check(CLIENT, [event, kept, bare])


def test_the_simulator_refuses_a_speed_the_service_refuses(
        sim: Simulator, key_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    from kiosk.session.gateway import GatewayClient
    from kiosk.session.link import Link
    from tests.session.test_link import LOOPBACK, run

    settings = make_settings(sim, key_file)
    grant = GatewayClient(settings.gateway, settings.realtime).create_grant()
    too_fast = replace(settings.realtime, speed=2.0)  # check-config would refuse this

    async def open_and_close() -> None:
        link = Link(grant, too_fast, LOOPBACK, None)
        await link.open()  # the service keeps the link and its defaults; the kiosk says so
        await link.close()

    run(open_and_close())
    errors = [e["error"] for e in sim.last_connection.server_events if e["type"] == "error"]
    assert [(e["code"], e["param"]) for e in errors] == [
        ("invalid_value", "session.audio.output.speed")]
    assert "rejected part of the session config" in caplog.text

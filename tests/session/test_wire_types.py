"""Every event the kiosk sends and every event the simulator sends, checked against the
official openai GA event types with a strict tagged union, and with no undeclared fields."""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args

import pytest
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from kiosk.events import AnswerFinished, AnswerStarted, VisitEnded, VisitReady
from kiosk.session import protocol as p
from kiosk.settings import RealtimeSettings
from kiosk.sim import Simulator, speech_like, utterance
from kiosk.sim.gateway_server import VOICE_CONFIG
from tests.session.fakes import FakeAudio, Posted


def strict_union(union: Any) -> TypeAdapter:
    members = get_args(get_args(union)[0])  # Annotated[Union[...], PropertyInfo] -> members
    return TypeAdapter(Annotated[Union[members], Field(discriminator="type")])  # noqa: UP007


CLIENT = strict_union(RealtimeClientEvent)
SERVER = strict_union(RealtimeServerEvent)


def undeclared(model: Any, path: str = "") -> list[str]:
    """Fields the official model does not declare (the SDK's models allow extras)."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        found += [f"{path}.{k}" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += undeclared(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            found += undeclared(item, f"{path}[{i}]")
    return found


def check(adapter: TypeAdapter, events: list[dict[str, Any]]) -> set[str]:
    problems = []
    for event in events:
        try:
            model = adapter.validate_python(event)
        except ValidationError as exc:
            problems.append(f"{event['type']}: {exc}")
            continue
        extra = undeclared(model)
        if extra:
            problems.append(f"{event['type']}: undeclared {extra}")
    assert not problems, "\n".join(problems[:5])
    return {e["type"] for e in events}


def test_the_union_really_is_strict() -> None:
    with pytest.raises(ValidationError):
        CLIENT.validate_python({"type": "response.audio.delta"})
    with pytest.raises(ValidationError):
        CLIENT.validate_python({"type": "conversation.item.truncate", "item_id": "x"})
    model = CLIENT.validate_python({"type": "input_audio_buffer.clear", "bogus": 1})
    assert undeclared(model) == [".bogus"]


def test_kiosk_builders_match_the_official_types() -> None:
    events = [p.session_update(VOICE_CONFIG, RealtimeSettings(voice="marin")),
              p.session_update({}, RealtimeSettings(interrupt_response=False, model=None)),
              p.session_update({**VOICE_CONFIG, "turn_detection": {"type": "semantic_vad",
                                                                   "eagerness": "low"},
                                "input_audio_noise_reduction": {"type": "far_field"},
                                "language": "de"}, RealtimeSettings()),
              p.append_audio(b"\x00\x01" * 480), p.truncate("item_1", 1234),
              p.response_cancel("resp_1"), p.response_cancel()]
    check(CLIENT, events)


def test_a_whole_session_on_the_wire(sim: Simulator, conversation, audio: FakeAudio,
                                     posted: Posted) -> None:
    """Turn, voice barge-in, button interrupt with cancel, errors, expiry: all validated."""
    sim.knobs.answer_s = 3.0
    sim.knobs.stream_speed = 1.5
    conv = conversation(realtime={"interrupt_response": False})
    conv.start("s1")
    posted.wait_for(VisitReady)
    audio.capture.speak(utterance())
    started = posted.wait_for(AnswerStarted)
    sim.wait_for(lambda: audio.playback.played_ms(started.item_id) >= 100)
    audio.capture.speak(speech_like(0.4))  # voice barge-in: truncate + cancel
    posted.wait_for(AnswerFinished)
    conn = sim.last_connection
    sim.wait_for(lambda: conn.cancelled_responses)
    audio.capture.speak(utterance())
    started = posted.wait_for(AnswerStarted, count=2)
    conv.interrupt()  # button: truncate + cancel
    posted.wait_for(AnswerFinished, count=2)
    sim.wait_for(lambda: len(conn.cancelled_responses) == 2)
    sim.knobs.answer_s, sim.knobs.stream_speed = 0.5, 4.0
    audio.capture.speak(utterance())  # a turn heard to the end
    posted.wait_for(AnswerFinished, count=3)
    for code in ("server_error", "invalid_value", "response_cancel_not_active"):
        sim.inject("error", code=code)
    sim.inject("bad_base64")
    sim.knobs.session_max_s = 0.1
    posted.wait_for(VisitEnded)

    sent = check(CLIENT, conn.client_events)
    assert {"session.update", "input_audio_buffer.append", "conversation.item.truncate",
            "response.cancel"} <= sent
    received = check(SERVER, conn.server_events)
    assert {"session.created", "session.updated", "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
            "conversation.item.added", "conversation.item.done",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed", "response.created",
            "response.output_item.added", "response.content_part.added",
            "response.output_audio.delta", "response.output_audio_transcript.delta",
            "response.output_audio.done", "response.output_audio_transcript.done",
            "response.content_part.done", "response.output_item.done", "response.done",
            "conversation.item.truncated", "error"} <= received


def test_simulator_answers_to_other_client_events(sim: Simulator, key_file) -> None:
    """Events the kiosk does not send but a compatible client may: the simulator's answers
    still follow the official types."""
    import asyncio

    from kiosk.session.gateway import GatewayClient
    from kiosk.session.link import Link
    from kiosk.session.protocol import user_audio_item
    from kiosk.settings import GatewaySettings

    gateway = GatewaySettings(url=sim.gateway_url, api_key_file=str(key_file))
    grant = GatewayClient(gateway, RealtimeSettings()).create_grant()

    async def scenario() -> None:
        link = Link(grant, RealtimeSettings(), gateway, None)
        await link.open()
        await link.append_audio(b"\x00\x00" * 4800)  # 200 ms of silence
        for event in ({"type": "input_audio_buffer.commit"},
                      {"type": "input_audio_buffer.commit"},  # now empty: an error
                      {"type": "input_audio_buffer.clear"},
                      {"type": "conversation.item.create",
                       "item": {"type": "message", "role": "user",
                                "content": [{"type": "input_text", "text": "hello"}]}},
                      {"type": "response.create"},
                      {"type": "response.create"},  # one is active: an error
                      {"type": "conversation.item.truncate", "item_id": "item_nope",
                       "content_index": 0, "audio_end_ms": 10},
                      # how the kiosk asks a question again on a new link
                      user_audio_item(b"\x00\x00" * 2400)):
            await link.send(event)
        while (await link.recv())["type"] != "response.done":
            pass
        await link.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
    conn = sim.last_connection
    check(CLIENT, conn.client_events)
    received = check(SERVER, conn.server_events)
    assert {"input_audio_buffer.committed", "input_audio_buffer.cleared", "error",
            "response.done"} <= received
    codes = [e["error"]["code"] for e in conn.server_events if e["type"] == "error"]
    assert codes == ["input_audio_buffer_commit_empty",
                     "conversation_already_has_active_response", "invalid_value"]

"""The assistant's request_nurse tool against the simulator: declared in session.update only
when asked for, the call closes the relay at once (the nurse request is made), its result
goes back as a function_call_output, the follow-up response.create comes once the call's
response is done, the answer plays, and every event on the wire is the official type. The
reason is health data: logged only as a transcript."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.conversation import Conversation
from kiosk.events import AnswerFinished, AnswerStarted, VisitReady
from kiosk.session import protocol as p
from kiosk.settings import RealtimeSettings
from kiosk.sim import Simulator, utterance
from tests.session.conftest import make_settings
from tests.session.fakes import FakeAudio, Posted
from tests.session.test_wire_types import CLIENT, SERVER, check

REASON = "The patient says she feels dizzy."


class NurseRequests:
    """Stands for NurseCall.request: records each request, answers whether it went out."""

    def __init__(self, passed_on: bool = True) -> None:
        self.passed_on = passed_on
        self.sources: list[str] = []

    def __call__(self, source: str) -> bool:
        self.sources.append(source)
        return self.passed_on


@pytest.fixture
def run(sim: Simulator, key_file: Path, audio: FakeAudio,
        posted: Posted) -> Iterator:
    made: list[Conversation] = []

    def start(requests: NurseRequests, transcripts: bool = False) -> Conversation:
        settings = make_settings(sim, key_file, realtime={"nurse_call_tool": True},
                                 transcripts=transcripts)
        conv = Conversation(settings, audio, posted, request_nurse=requests)
        made.append(conv)
        conv.start("v1")
        posted.wait_for(VisitReady)
        return conv

    yield start
    for conv in made:
        conv.close()


def test_the_tool_is_declared_only_when_asked_for() -> None:
    plain = p.session_update({}, RealtimeSettings())["session"]
    assert "tools" not in plain and "tool_choice" not in plain
    with_tool = p.session_update({}, RealtimeSettings(nurse_call_tool=True))["session"]
    assert with_tool["tools"] == [p.NURSE_TOOL] and with_tool["tool_choice"] == "auto"
    assert p.NURSE_TOOL["parameters"]["required"] == ["reason"]
    check(CLIENT, [p.session_update({}, RealtimeSettings(nurse_call_tool=True)),
                   p.function_call_output("call_1", {"nurse_called": True})])


def test_a_tool_call_round_trip_requests_the_nurse_and_the_answer_plays(
        run, sim: Simulator, audio: FakeAudio, posted: Posted, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    requests = NurseRequests()
    run(requests)
    sim.knobs.call_tool_next = True
    audio.capture.speak(utterance())  # "I feel dizzy, please get the nurse"
    started = posted.wait_for(AnswerStarted, timeout_s=15)
    posted.wait_for(AnswerFinished, timeout_s=15)
    assert requests.sources == ["assistant"]  # the relay was asked to close, once

    conn = sim.last_connection
    (update,) = conn.events_of("session.update")
    assert update["session"]["tools"][0]["name"] == "request_nurse"
    (done,) = conn.events_of("response.function_call_arguments.done", sent=True)
    assert done["name"] == "request_nurse" and json.loads(done["arguments"])["reason"] == REASON
    sim.wait_for(lambda: conn.events_of("response.create"), 5)
    creates = [e for e in conn.client_events if e["type"] in ("conversation.item.create",
                                                              "response.create")]
    item, create = creates[-2:]
    assert item["item"]["type"] == "function_call_output"
    assert item["item"]["call_id"] == done["call_id"]
    assert json.loads(item["item"]["output"])["nurse_called"] is True
    assert create["type"] == "response.create"
    # response.create only after the tool call's response was done: the service refuses a
    # second active response with an error, and it complained about nothing.
    assert not conn.events_of("error", sent=True), conn.events_of("error", sent=True)
    # The answer that played is the follow-up's: the tool call's response had no audio, and
    # the kiosk did not pretend the turn was over in between.
    assert len(posted.of(AnswerFinished)) == 1
    follow_up = conn.events_of("response.output_audio.delta", sent=True)[0]
    assert started.item_id == follow_up["item_id"]

    check(CLIENT, conn.client_events)
    sent = check(SERVER, conn.server_events)
    assert {"response.function_call_arguments.delta", "response.function_call_arguments.done",
            "response.output_item.added", "response.output_item.done"} <= sent
    # The reason is health data: not in the log unless transcripts are on.
    assert "dizzy" not in caplog.text


def test_when_the_relay_does_not_work_the_model_is_told_so(run, sim, audio, posted,
                                                            caplog) -> None:
    caplog.set_level(logging.INFO, logger="kiosk.transcript")
    requests = NurseRequests(passed_on=False)
    run(requests, transcripts=True)
    sim.knobs.call_tool_next = True
    audio.capture.speak(utterance())
    posted.wait_for(AnswerFinished, timeout_s=15)
    conn = sim.last_connection
    (item,) = [e for e in conn.events_of("conversation.item.create")
               if e["item"]["type"] == "function_call_output"]
    output = json.loads(item["item"]["output"])
    assert output["nurse_called"] is False and "call button" in output["message"]
    # With transcripts on, the reason goes to the transcript logger, and only there.
    lines = [r for r in caplog.records if "dizzy" in r.getMessage()]
    assert lines and all(r.name == "kiosk.transcript" for r in lines)

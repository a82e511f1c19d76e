"""No secret and no word of the conversation reaches the log, unless transcripts are
switched on, and then only through the kiosk.transcript logger."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kiosk.conversation import Conversation
from kiosk.events import AnswerFinished, Fault, VisitReady
from kiosk.sim import Simulator, utterance
from tests.session.conftest import make_settings
from tests.session.fakes import FakeAudio, Posted


def secrets_seen(sim: Simulator, password: str) -> set[str]:
    found = {sim.api_key, password}
    for request in sim.gateway_requests:
        for name in ("authorization", "x-api-key"):
            if name in request.headers:
                found.add(request.headers[name].removeprefix("Bearer "))
        if isinstance(request.body, dict) and "refresh_token" in request.body:
            found.add(request.body["refresh_token"])
    found |= {c.token for c in sim.connections if c.token}
    with sim.accounts.lock:
        found |= set(sim.accounts.access) | set(sim.accounts.refresh)
    return {s for s in found if s}


def run_session(sim: Simulator, tmp_path: Path, audio: FakeAudio, posted: Posted,
                transcripts: bool) -> str:
    email, password = sim.create_user()
    pw = tmp_path / "password"
    pw.write_text(password)
    sim.knobs.access_ttl_s = 1  # refresh on every request: more tokens to leak
    settings = make_settings(sim, tmp_path / "unused", transcripts=transcripts,
                             gateway={"api_key_file": None, "email": email,
                                      "password_file": str(pw)})
    conv = Conversation(settings, audio, posted)
    conv.start("s1")
    posted.wait_for(VisitReady)
    sim.inject("drop")  # a reconnect: a second grant and token
    posted.wait_for(VisitReady, count=2)
    audio.capture.speak(utterance())
    posted.wait_for(AnswerFinished)
    sim.knobs.gateway_status = 401
    sim.inject("drop")
    conv2 = Conversation(settings, audio, posted)
    conv.end("done")
    conv2.start("s2")  # and a failure, whose message must not carry secrets either
    posted.wait_for(Fault)
    conv2.end("done")
    return password


@pytest.mark.parametrize("transcripts", [False, True])
def test_logs_carry_no_secrets_and_transcripts_only_when_asked(
        sim: Simulator, tmp_path: Path, audio: FakeAudio, posted: Posted,
        caplog: pytest.LogCaptureFixture, transcripts: bool) -> None:
    caplog.set_level(logging.DEBUG)
    password = run_session(sim, tmp_path, audio, posted, transcripts)
    records = caplog.records
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records)
    leaked = [s for s in secrets_seen(sim, password) if s in text]
    assert not leaked, "secrets in the log"
    assert len(secrets_seen(sim, password)) >= 6
    words = [sim.knobs.user_transcript, sim.knobs.answer_text]
    others = "\n".join(r.getMessage() for r in records if r.name != "kiosk.transcript")
    assert not [w for w in words if w in others]
    said = [r.getMessage() for r in records if r.name == "kiosk.transcript"]
    if transcripts:
        assert f"patient: {words[0]}" in said and f"assistant: {words[1]}" in said
    else:
        assert said == []

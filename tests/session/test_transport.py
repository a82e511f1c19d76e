"""The transport a hospital network needs, over real sockets: the hospital's private CA for
the gateway *and* the realtime link, no credential sent where a redirect points, and no
unencrypted link off this machine unless the configuration says so."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.conversation import Conversation
from kiosk.events import AnswerFinished, Fault, VisitReady
from kiosk.sim import Simulator, utterance
from kiosk.sim.recorder import HeaderRecorder
from tests.session.conftest import make_settings
from tests.session.fakes import FakeAudio, Posted
from tests.tlsca import PrivateCA


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCA:
    return PrivateCA(tmp_path / "ca")


@pytest.fixture
def tls_sim(ca: PrivateCA) -> Iterator[Simulator]:
    with Simulator(tls=ca.server_files) as sim:  # https:// gateway, wss:// realtime
        yield sim


def conversation_for(sim: Simulator, key_file: Path, audio: FakeAudio, posted: Posted,
                     **gateway: object) -> Conversation:
    return Conversation(make_settings(sim, key_file, gateway=gateway), audio, posted)


def test_the_hospital_ca_is_trusted_on_both_the_gateway_and_the_link(
        tls_sim: Simulator, ca: PrivateCA, tmp_path: Path, audio: FakeAudio,
        posted: Posted) -> None:
    key = tmp_path / "key"
    key.write_text(tls_sim.api_key)
    key.chmod(0o600)
    assert tls_sim.gateway_url.startswith("https://")
    assert tls_sim.realtime_url.startswith("wss://")
    conv = conversation_for(tls_sim, key, audio, posted, ca_file=str(ca.ca_file))
    try:
        conv.start("v1")
        posted.wait_for(VisitReady)  # the wss:// link verified against gateway.ca_file too
        audio.capture.speak(utterance())
        posted.wait_for(AnswerFinished)
    finally:
        conv.close()


def test_without_the_hospital_ca_the_kiosk_refuses_and_says_what_to_set(
        tls_sim: Simulator, tmp_path: Path, audio: FakeAudio, posted: Posted) -> None:
    key = tmp_path / "key"
    key.write_text(tls_sim.api_key)
    key.chmod(0o600)
    conv = conversation_for(tls_sim, key, audio, posted)
    try:
        conv.start("v1")
        fault = posted.wait_for(Fault, timeout_s=10)
    finally:
        conv.close()
    assert fault.kind == "network"
    assert "not trusted" in fault.message and "gateway.ca_file" in fault.message
    assert not tls_sim.connections  # nothing was said to an unverified server


def test_verify_tls_off_works_and_is_warned_about(tls_sim: Simulator, tmp_path: Path,
                                                 audio: FakeAudio, posted: Posted,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    key = tmp_path / "key"
    key.write_text(tls_sim.api_key)
    key.chmod(0o600)
    conv = conversation_for(tls_sim, key, audio, posted, verify_tls=False)
    try:
        conv.start("v1")
        posted.wait_for(VisitReady)
    finally:
        conv.close()
    assert any("verify_tls is false" in r.getMessage() for r in caplog.records)


def test_a_redirect_from_the_gateway_is_not_followed_with_the_credential(
        sim: Simulator, key_file: Path, audio: FakeAudio, posted: Posted) -> None:
    with HeaderRecorder(status=200, answer={}) as elsewhere:
        sim.knobs.gateway_redirect = elsewhere.url("localhost") + "/api/voice/realtime-session"
        conv = conversation_for(sim, key_file, audio, posted)
        try:
            conv.start("v1")
            fault = posted.wait_for(Fault, timeout_s=10)
        finally:
            conv.close()
        assert not elsewhere.requests  # the key never left for the other host
    assert fault.kind == "config" and "redirect (302)" in fault.message
    assert "credential was not sent" in fault.message and "localhost" in fault.message
    assert sim.gateway_requests[-1].headers["x-api-key"] == sim.api_key  # asked only here

"""The simulator behaves like the real services, seen from a bare client on the wire."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from kiosk.session.protocol import GA_TO_BETA
from kiosk.sim import Simulator, silence, speech_like, synth_voice
from kiosk.sim.vad import EnergyVad
from tests.sim.conftest import Peer, grant, post

RESPONSE_ORDER = ["response.created", "response.output_item.added", "conversation.item.added",
                  "response.content_part.added"]
RESPONSE_END = ["response.output_audio.done", "response.output_audio_transcript.done",
                "response.content_part.done", "response.output_item.done",
                "conversation.item.done", "response.done"]


def turn(lead_s: float = 0.5, speech_s: float = 1.0, tail_s: float = 0.7) -> np.ndarray:
    return np.concatenate([silence(lead_s), speech_like(speech_s), silence(tail_s)])


def configure(peer: Peer, **turn_detection) -> None:
    td = {"type": "server_vad", "silence_duration_ms": 500, "prefix_padding_ms": 300,
          **turn_detection}
    peer.send({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": td,
                                                "transcription": {"model": "whisper-1"}}}}})
    peer.next("session.updated")


def test_a_turn_in_the_real_event_order(sim: Simulator, peer: Peer) -> None:
    configure(peer)
    peer.append(turn())
    events = peer.until("response.done")
    types = [e["type"] for e in events]
    assert types[:5] == ["input_audio_buffer.speech_started",
                         "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                         "conversation.item.added",
                         "conversation.item.input_audio_transcription.delta"]
    assert types[5:10] == ["conversation.item.input_audio_transcription.completed",
                           *RESPONSE_ORDER]
    assert types[-6:] == RESPONSE_END
    started, stopped = events[0], events[1]
    # Speech from 500 ms to 1500 ms; start reported with 300 ms prefix padding.
    assert started["audio_start_ms"] == 200
    assert 1480 <= stopped["audio_end_ms"] <= 1500
    assert started["item_id"] == stopped["item_id"] == events[2]["item_id"]
    audio = b"".join(base64.b64decode(e["delta"]) for e in events
                     if e["type"] == "response.output_audio.delta")
    answer = np.frombuffer(audio, dtype="<i2")
    assert np.array_equal(answer, synth_voice(1.5, 220.0))
    transcript = "".join(e["delta"] for e in events
                         if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == sim.knobs.answer_text
    assert events[-1]["response"]["status"] == "completed"
    assert len(sim.last_connection.speech_stopped_at) == 1


def test_the_answer_voice_has_the_known_fundamental() -> None:
    pcm = synth_voice(1.5, 220.0).astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 24000)
    assert abs(freqs[np.argmax(spectrum)] - 220.0) < 2.0
    assert len(pcm) == 36000 and np.max(np.abs(pcm)) > 5000
    # A syllable-rate envelope: loudness varies at about 4 Hz.
    rms = np.sqrt(np.mean(pcm[:36000].reshape(-1, 600) ** 2, axis=1))  # 25 ms windows
    env = np.abs(np.fft.rfft(rms - rms.mean()))
    env_freqs = np.fft.rfftfreq(len(rms), 0.025)
    assert abs(env_freqs[np.argmax(env)] - 4.0) < 0.7


def test_vad_alone_finds_speech_boundaries() -> None:
    vad = EnergyVad(silence_duration_ms=400, prefix_padding_ms=0)
    events = vad.feed(turn(0.3, 0.6, 0.5))
    assert [(e.kind, e.at_ms) for e in events] == [("started", 300), ("stopped", 900)]


def test_speech_over_the_answer_cancels_it(sim: Simulator, peer: Peer) -> None:
    sim.knobs.answer_s, sim.knobs.stream_speed = 4.0, 1.0
    configure(peer)
    peer.append(turn())
    peer.next("response.output_audio.delta")
    peer.append(speech_like(0.3))
    events = peer.until("response.done")
    assert events[-1]["response"]["status"] == "cancelled"
    assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
    assert "input_audio_buffer.speech_started" in [e["type"] for e in events]


def test_without_interrupt_response_the_answer_goes_on(sim: Simulator, peer: Peer) -> None:
    sim.knobs.answer_s, sim.knobs.stream_speed = 1.0, 2.0
    configure(peer, interrupt_response=False)
    peer.append(turn())
    peer.next("response.output_audio.delta")
    peer.append(speech_like(0.3))
    assert peer.next("response.done")["response"]["status"] == "completed"


def test_truncate_is_checked_against_the_audio_sent(sim: Simulator, peer: Peer) -> None:
    sim.knobs.answer_s = 0.5
    configure(peer)
    peer.append(turn())
    done = peer.next("response.done")
    item = done["response"]["output"][0]["id"]
    peer.send({"type": "conversation.item.truncate", "item_id": item, "content_index": 0,
               "audio_end_ms": 501})
    error = peer.next("error")["error"]
    assert error["code"] == "invalid_value" and error["param"] == "audio_end_ms"
    peer.send({"type": "conversation.item.truncate", "item_id": item, "content_index": 0,
               "audio_end_ms": 500})
    assert peer.next("conversation.item.truncated")["audio_end_ms"] == 500
    assert sim.last_connection.truncations == [{"item_id": item, "audio_end_ms": 500,
                                                "sent_ms": 500}]


def test_cancel_without_a_response(peer: Peer) -> None:
    peer.send({"type": "response.cancel"})
    assert peer.next("error")["error"]["code"] == "response_cancel_not_active"


def test_session_cap_sends_session_expired_then_1001(sim: Simulator, peer: Peer) -> None:
    sim.knobs.session_max_s = 0.2
    assert peer.next("error")["error"]["code"] == "session_expired"
    with pytest.raises(ConnectionError):
        peer.next()
    assert peer.close_code == 1001


def test_drop_after_events_is_one_shot(sim: Simulator) -> None:
    sim.knobs.drop_after_events = 2
    g = grant(sim)
    first = Peer(g["url"], g["auth"]["token"])
    first.append(silence(0.3), chunk=2400)  # 3 appends: the link dies after the 2nd
    sim.wait_for(lambda: sim.connections and not sim.connections[0].open)
    assert sim.connections[0].close_code is None  # no close frame: a dead link
    assert len(sim.connections[0].client_events) == 2
    assert sim.knobs.drop_after_events is None
    second = Peer(g["url"], g["auth"]["token"])
    second.append(silence(0.3))
    sim.wait_for(lambda: len(sim.connections) > 1
                 and len(sim.connections[1].client_events) == 3)
    second.close()


def test_beta_names_mode(sim: Simulator, peer: Peer) -> None:
    sim.knobs.beta_names, sim.knobs.answer_s = True, 0.3
    configure(peer)
    peer.append(turn())
    types = [e["type"] for e in peer.until("response.done")]
    assert "response.audio.delta" in types and "response.output_audio.delta" not in types
    assert "conversation.item.created" in types
    assert set(types) & set(GA_TO_BETA) == set()


def test_beta_header_and_beta_session_shape_are_refused(sim: Simulator) -> None:
    g = grant(sim)
    old = Peer(g["url"], g["auth"]["token"], ["OpenAI-Beta: realtime=v1"])
    assert old.next("error")["error"]["code"] == "beta_api_shape_disabled"
    with pytest.raises(ConnectionError):
        old.next()
    assert old.close_code == 4000
    flat = Peer(g["url"], g["auth"]["token"])
    flat.next("session.created")
    flat.send({"type": "session.update", "session": {"modalities": ["text", "audio"],
                                                     "voice": "alloy"}})
    assert flat.next("error")["error"]["code"] == "beta_api_shape_disabled"
    with pytest.raises(ConnectionError):
        flat.next()
    assert flat.close_code == 4000


@pytest.mark.parametrize("token", [None, "ek_made_up"])
def test_bad_tokens_close_3000(sim: Simulator, token: str | None) -> None:
    peer = Peer(sim.realtime_url, token)
    assert peer.next("error")["error"]["code"] == "invalid_api_key"
    with pytest.raises(ConnectionError):
        peer.next()
    assert peer.close_code == 3000


def test_ephemeral_tokens_expire(sim: Simulator) -> None:
    sim.knobs.token_ttl_s = 0.0
    g = grant(sim)
    peer = Peer(g["url"], g["auth"]["token"])
    with pytest.raises(ConnectionError):
        peer.next("session.created")
    assert peer.close_code == 3000


def test_gateway_credentials_and_forms(sim: Simulator) -> None:
    status, body, _ = post(sim, "/api/voice/realtime-session", {})
    assert status == 401
    email, password = sim.create_user()
    status, pair, _ = post(sim, "/api/auth/login", {"email": email, "password": password})
    assert status == 200 and pair["token_type"] == "bearer" and pair["expires_in"] == 300
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    status, body, _ = post(sim, "/api/voice/realtime-session", {"conversation_id": "c1"},
                           {**bearer, "X-API-Key": "wrong"})  # the JWT wins
    assert status == 200 and body["conversation_id"] == "c1"
    assert body["auth"]["type"] == "ephemeral_token" and body["voice_config"]["voice"]
    status, newer, _ = post(sim, "/api/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert status == 200 and newer["refresh_token"] != pair["refresh_token"]
    status, _, _ = post(sim, "/api/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert status == 200  # like the real gateway: listed as revoked, never checked
    sim.knobs.refresh_rotation = True
    status, _, _ = post(sim, "/api/auth/refresh", {"refresh_token": newer["refresh_token"]})
    assert status == 200
    status, _, _ = post(sim, "/api/auth/refresh", {"refresh_token": newer["refresh_token"]})
    assert status == 401  # strict rotation: a refresh token works once
    sim.knobs.response_form = "early"
    status, body, _ = post(sim, "/api/voice/realtime-session", {}, {"X-API-Key": sim.api_key})
    assert "api_key" in body and "auth" not in body
    email2, pw2 = sim.create_user("two@ward.example", requires_2fa=True)
    status, body, _ = post(sim, "/api/auth/login", {"email": email2, "password": pw2})
    assert body["requires_2fa"] is True and "access_token" not in body


def test_gateway_fault_knobs(sim: Simulator) -> None:
    key = {"X-API-Key": sim.api_key}
    sim.knobs.gateway_status, sim.knobs.retry_after_s = 429, 7
    status, _, headers = post(sim, "/api/voice/realtime-session", {}, key)
    assert status == 429 and headers["Retry-After"] == "7"
    sim.knobs.gateway_status, sim.knobs.gateway_fail_count = 503, 1
    status, body, _ = post(sim, "/api/voice/realtime-session", {}, key)
    assert status == 503 and "not enabled" in body["detail"]
    assert post(sim, "/api/voice/realtime-session", {}, key)[0] == 200  # count used up
    sim.knobs.gateway_malformed = "not_json"
    assert "raw" in post(sim, "/api/voice/realtime-session", {}, key)[1]


def test_standalone_entry_point_prints_how_to_connect() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kiosk.sim"], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        lines = [proc.stdout.readline().split(None, 1) for _ in range(3)]
        assert [name for name, _ in lines] == ["gateway:", "realtime:", "api"]
        gateway_url, realtime_url = lines[0][1].strip(), lines[1][1].strip()
        key = lines[2][1].split()[-1]
        assert gateway_url.startswith("http://127.0.0.1:") and key.startswith("va_k_")
        assert realtime_url.startswith("ws://127.0.0.1:")

        class Printed:  # what the post() helper needs from a simulator
            pass
        printed = Printed()
        printed.gateway_url = gateway_url
        status, body, _ = post(printed, "/api/voice/realtime-session", {},  # type: ignore
                               {"X-API-Key": key})
        assert status == 200 and body["url"] == realtime_url
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0

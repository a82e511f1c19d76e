"""The simulated gateway answers like the real one was measured to (protocol.md, section 1b):
the bodies, headers and timings a kiosk meets, by default or behind a knob."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from kiosk.sim import Simulator
from kiosk.sim.knobs import MEASURED_MODEL
from kiosk.sim.recorder import HeaderRecorder
from tests.sim.conftest import Peer, post

SESSION = "/api/voice/realtime-session"


def raw_post(url: str, path: str, body: bytes, headers: dict[str, str]
             ) -> tuple[int, dict[str, str], bytes]:
    """One POST that follows no redirect and parses nothing."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def session(sim: Simulator, body: dict | None = None, **headers: str) -> tuple[int, dict, dict]:
    return post(sim, SESSION, body or {}, {"X-API-Key": sim.api_key, **headers})


def test_a_forced_429_is_the_real_rate_limiters_answer(sim: Simulator) -> None:
    sim.knobs.gateway_status = 429
    status, headers, raw = raw_post(sim.gateway_url, SESSION, b"{}",
                                    {"X-API-Key": sim.api_key})
    assert status == 429
    assert json.loads(raw) == {"error": "Rate limit exceeded: 10 per 1 minute"}
    assert "retry-after" not in headers
    sim.knobs.retry_after_s = 7  # a knob can still add one
    assert raw_post(sim.gateway_url, SESSION, b"{}", {})[1]["retry-after"] == "7"


def test_logins_are_rate_limited_per_address_until_a_restart(sim: Simulator) -> None:
    email, password = sim.create_user()
    answers = [post(sim, "/api/auth/login", {"email": email, "password": password})
               for _ in range(11)]
    assert [status for status, _, _ in answers] == [200] * 10 + [429]
    status, body, headers = answers[-1]
    assert body == {"error": "Rate limit exceeded: 10 per 1 minute"}
    assert "Retry-After" not in headers
    sim.restart_gateway()
    assert post(sim, "/api/auth/login", {"email": email, "password": password})[0] == 200


def test_slow_speech_service_within_and_beyond_the_gateways_timeout(sim: Simulator) -> None:
    sim.knobs.upstream_delay_s, sim.knobs.upstream_timeout_s = 0.3, 0.6
    began = time.monotonic()
    assert session(sim)[0] == 200
    assert time.monotonic() - began >= 0.3  # the grant came after the upstream call
    sim.expire_tokens()  # no cached token: the next grant calls upstream again
    sim.knobs.upstream_delay_s = 30.0
    began = time.monotonic()
    status, body, _ = session(sim)
    waited = time.monotonic() - began
    assert (status, body) == (503, {"detail": "OpenAI session creation timed out"})
    assert 0.6 <= waited < 30.0  # after the gateway's own timeout, not the service's delay


@pytest.mark.parametrize("fault,status,detail", [
    ("failed", 503, "Failed to create OpenAI session: "),
    ("error", 500, "Failed to create Realtime session: ")])
def test_speech_service_failures(sim: Simulator, fault: str, status: int, detail: str) -> None:
    sim.knobs.upstream_fault, sim.knobs.gateway_fail_count = fault, 1
    got, body, _ = session(sim)
    assert got == status and body["detail"].startswith(detail) and set(body) == {"detail"}
    assert session(sim)[0] == 200  # the count is used up
    assert sim.knobs.upstream_fault is None


def test_ephemeral_tokens_are_shared_per_model_and_voice(sim: Simulator) -> None:
    first, second = session(sim)[1], session(sim)[1]
    assert first["auth"]["token"] == second["auth"]["token"]  # two kiosks, one token
    assert first["session_id"] != second["session_id"]
    other_voice = session(sim, {"voice": "echo"})[1]
    assert other_voice["auth"]["token"] != first["auth"]["token"]
    sim.knobs.upstream_delay_s = 30.0  # a cache hit never calls the slow service
    assert session(sim)[1]["auth"]["token"] == first["auth"]["token"]
    sim.knobs.upstream_delay_s = 0.0
    sim.expire_tokens()
    assert session(sim)[1]["auth"]["token"] != first["auth"]["token"]
    sim.expire_tokens()
    sim.knobs.token_ttl_s = 60.0  # the legacy endpoint's lifetime: never 60 s left, no reuse
    assert session(sim)[1]["auth"]["token"] != session(sim)[1]["auth"]["token"]
    sim.knobs.token_ttl_s, sim.knobs.token_cache = 600.0, False
    assert session(sim)[1]["auth"]["token"] != session(sim)[1]["auth"]["token"]


def test_the_default_grant_as_measured(sim: Simulator) -> None:
    status, grant, _ = session(sim)
    assert status == 200
    assert grant["model"] == MEASURED_MODEL
    assert grant["voice_config"]["voice"] == "nova"
    assert grant["session_id"].startswith("rtc_")
    assert isinstance(grant["expires_at"], int) and grant["auth"]["token"].startswith("ek_")
    assert grant["audio_enhancements"] == {"noise_suppression": True, "vad_threshold": 0.5}
    assert grant["voice_config"]["turn_detection"]["threshold"] == 0.5


@pytest.mark.parametrize("asked,given", [("shimmer", "shimmer"), ("fable", "fable"),
                                         ("marin", "alloy"), ("nonsense", "alloy")])
def test_voices_outside_the_gateways_list_silently_become_alloy(sim: Simulator, asked: str,
                                                                given: str) -> None:
    assert session(sim, {"voice": asked})[1]["voice_config"]["voice"] == given


@pytest.mark.parametrize("sensitivity,threshold", [(0, 0.9), (40, 0.58), (80, 0.26),
                                                   (100, 0.1)])
def test_vad_sensitivity_maps_to_a_threshold(sim: Simulator, sensitivity: int,
                                             threshold: float) -> None:
    grant = session(sim, {"vad_sensitivity": sensitivity})[1]
    assert grant["voice_config"]["turn_detection"]["threshold"] == threshold
    assert grant["audio_enhancements"]["vad_threshold"] == threshold


def test_adaptive_vad_after_a_gateway_restart(sim: Simulator) -> None:
    def silence_ms(body: dict) -> int:
        return session(sim, body)[1]["voice_config"]["turn_detection"]["silence_duration_ms"]

    assert silence_ms({"adaptive_vad": True}) == 200  # the first session since start
    assert silence_ms({"adaptive_vad": True}) == 500
    sim.restart_gateway()
    assert silence_ms({"adaptive_vad": True, "silence_duration_ms": 700}) == 700  # asked
    sim.restart_gateway()
    assert silence_ms({}) == 500  # adaptive not asked for
    assert silence_ms({"adaptive_vad": True}) == 500  # not the first any more


def test_the_real_401_bodies(sim: Simulator) -> None:
    assert session(sim, **{"X-API-Key": "va_k_wrong"})[1] == {"detail": "Invalid API key"}
    assert post(sim, SESSION, {})[1] == {"detail": "Not authenticated"}
    assert post(sim, SESSION, {}, {"Authorization": "Bearer eyJ.bad"})[1] == {
        "detail": "Could not validate credentials"}


def test_fastapi_422s(sim: Simulator) -> None:
    status, _, raw = raw_post(sim.gateway_url, SESSION, b"{not json",
                              {"X-API-Key": sim.api_key})
    (error,) = json.loads(raw)["detail"]
    assert status == 422 and error["type"] == "json_invalid" and error["loc"] == ["body", 0]
    status, body, _ = session(sim, {"vad_sensitivity": "loud", "voice": 3})
    assert status == 422
    assert [(e["type"], e["loc"]) for e in body["detail"]] == [
        ("string_type", ["body", "voice"]), ("int_parsing", ["body", "vad_sensitivity"])]
    status, body, _ = post(sim, "/api/auth/login", {"email": "kiosk@ward.example"})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "password"]
    assert session(sim, {"vad_sensitivity": "40"})[0] == 200  # pydantic's lax mode


def test_credential_checks_take_the_time_a_knob_gives(sim: Simulator) -> None:
    sim.knobs.api_key_check_s = 0.35  # bcrypt in the real gateway
    began = time.monotonic()
    assert session(sim)[0] == 200
    assert time.monotonic() - began >= 0.35


def test_a_redirect_to_another_host_and_what_arrives_there(sim: Simulator) -> None:
    with HeaderRecorder() as other:
        target = other.url("localhost") + SESSION
        sim.knobs.gateway_redirect = target
        status, headers, _ = raw_post(sim.gateway_url, SESSION, b"{}",
                                      {"X-API-Key": sim.api_key})
        assert (status, headers["location"]) == (302, target)
        assert sim.gateway_requests[-1].status == 302
        assert not other.requests  # nothing followed yet
        # What a careless client does: urllib's default handler follows the 302 and
        # carries the key along. The recorder shows it, which is what tests need.
        req = urllib.request.Request(sim.gateway_url + SESSION, data=b"{}", method="POST",
                                     headers={"X-API-Key": sim.api_key})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as answered:
            opener.open(req, timeout=5)
        assert answered.value.code == 404  # the recorder's answer
        arrived = other.wait_for_request()
        assert arrived.headers["host"].startswith("localhost:")
        assert arrived.headers["x-api-key"] == sim.api_key


def test_the_realtime_side_refuses_the_retired_default_model(sim: Simulator) -> None:
    grant = session(sim)[1]
    peer = Peer(grant["url"], grant["auth"]["token"], model=grant["model"])
    error = peer.next("error")["error"]
    assert error["code"] == "model_not_found" and MEASURED_MODEL in error["message"]
    with pytest.raises(ConnectionError):
        peer.next()
    assert peer.close_code == 4000
    assert sim.last_connection.session == {}  # no session was ever created


def test_a_voice_the_service_lacks_is_refused_and_the_old_one_kept(sim: Simulator) -> None:
    grant = session(sim)[1]
    peer = Peer(grant["url"], grant["auth"]["token"])
    peer.next("session.created")
    peer.send({"type": "session.update", "session": {"type": "realtime", "audio": {
        "output": {"voice": grant["voice_config"]["voice"]}}}})  # "nova"
    error = peer.next("error")["error"]
    assert error["code"] == "invalid_value" and error["param"] == "session.audio.output.voice"
    assert sim.last_connection.session["audio"]["output"]["voice"] == "alloy"
    peer.send({"type": "session.update", "session": {"type": "realtime", "audio": {
        "output": {"voice": "marin"}}}})
    assert peer.next("session.updated")["session"]["audio"]["output"]["voice"] == "marin"
    peer.close()

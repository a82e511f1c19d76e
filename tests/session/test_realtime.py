"""The realtime WebSocket client on its own, against the simulator and two tiny misbehaving
servers: handshake, token refusal, config rejection, close handling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from websockets.sync.server import serve

from kiosk.session.gateway import GatewayClient, SessionGrant
from kiosk.session.realtime import RealtimeClient, RealtimeError, RealtimeHandler
from kiosk.settings import GatewaySettings, RealtimeSettings
from kiosk.sim import Simulator


class Recorder(RealtimeHandler):
    def __init__(self) -> None:
        self.errors: list[tuple[str, str, str]] = []
        self.closed: list[tuple[int | None, str]] = []
        self.done = threading.Event()

    def on_error(self, code: str, message: str, action: str) -> None:
        self.errors.append((code, message, action))

    def on_closed(self, code: int | None, reason: str) -> None:
        self.closed.append((code, reason))
        self.done.set()


def grant_for(sim: Simulator, key_file: Path) -> SessionGrant:
    return GatewayClient(GatewaySettings(url=sim.gateway_url, api_key_file=str(key_file)),
                         RealtimeSettings()).create_session()


FAST = RealtimeSettings(connect_timeout_s=2.0)


def test_connect_configure_and_close(sim: Simulator, key_file: Path) -> None:
    handler = Recorder()
    client = RealtimeClient(grant_for(sim, key_file), FAST, handler)
    client.connect()
    assert client.connected and client.session["type"] == "realtime"
    conn = sim.last_connection
    assert conn.headers["authorization"] == f"Bearer {client.grant.token}"
    assert "openai-beta" not in conn.headers
    assert conn.client_types() == ["session.update"]
    client.close()
    client.close()  # idempotent
    assert handler.done.wait(2) and handler.closed == [(1000, "closed by the kiosk")]
    sim.wait_for(lambda: not conn.open)
    assert conn.close_code == 1000
    assert not client.send({"type": "input_audio_buffer.clear"})


def test_expired_token_is_refused_with_close_3000(sim: Simulator, key_file: Path) -> None:
    grant = grant_for(sim, key_file)
    sim.expire_tokens()
    with pytest.raises(RealtimeError) as err:
        RealtimeClient(grant, FAST, Recorder()).connect()
    assert err.value.kind == "auth" and err.value.close_code == 3000
    assert "invalid_api_key" in err.value.message


def test_invalid_voice_is_reported_and_session_continues(sim: Simulator,
                                                         key_file: Path) -> None:
    grant = grant_for(sim, key_file)
    grant = replace(grant, voice_config={**grant.voice_config, "voice": "nova"})
    # "nova" is a gateway voice the realtime service lacks: the kiosk leaves it out.
    client = RealtimeClient(grant, FAST, Recorder())
    client.connect()
    voice = sim.last_connection.events_of("session.update")[0]["session"]["audio"]["output"]
    assert "voice" not in voice
    client.close()


def test_unreachable_service_is_a_network_error(key_file: Path) -> None:
    grant = SessionGrant(url="ws://127.0.0.1:9/v1/realtime", model="m", token="t",
                         expires_at=2e9, session_id="s", conversation_id=None, voice_config={})
    with pytest.raises(RealtimeError) as err:
        RealtimeClient(grant, FAST, Recorder()).connect()
    assert err.value.kind == "network" and "cannot connect" in err.value.message


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts the WebSocket and then says nothing (no session.created)."""
    release = threading.Event()

    def handler(ws) -> None:
        release.wait(5)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/v1/realtime"
        release.set()
        server.shutdown()


def test_no_session_created_times_out(silent_server: str) -> None:
    grant = SessionGrant(url=silent_server, model="m", token="t", expires_at=2e9,
                         session_id="s", conversation_id=None, voice_config={})
    with pytest.raises(RealtimeError) as err:
        RealtimeClient(grant, RealtimeSettings(connect_timeout_s=0.5), Recorder()).connect()
    assert err.value.kind == "network" and "no session.created" in err.value.message


def test_unknown_events_and_junk_are_ignored(sim: Simulator, key_file: Path) -> None:
    handler = Recorder()
    client = RealtimeClient(grant_for(sim, key_file), RealtimeSettings(max_message_kib=64),
                            handler)
    client.connect()
    for kind in ("unknown_event", "bad_json", "binary", "oversized", "bad_base64",
                 "odd_bytes"):
        sim.inject(kind, size_kib=80)
    sim.inject("error", code="response_cancel_not_active")
    sim.wait_for(lambda: handler.errors)
    assert handler.errors[0][2] == "ignore"
    assert client.dropped_messages == 5 and client.connected
    client.close()


def test_realtime_url_sets_the_model_once_and_keeps_other_parameters() -> None:
    from kiosk.session.realtime import realtime_url

    assert realtime_url("wss://api.openai.com/v1/realtime", "gpt-realtime") == \
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert realtime_url("wss://gw.example/v1/realtime?model=retired&region=eu",
                        "gpt-realtime") == \
        "wss://gw.example/v1/realtime?region=eu&model=gpt-realtime"

"""One realtime link on its own, against the simulator and tiny misbehaving servers:
handshake, token refusal, config rejection, junk, redirects, close handling."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.server import serve

from kiosk.session.gateway import GatewayClient, Grant
from kiosk.session.link import Link, LinkClosed, LinkError, realtime_url
from kiosk.settings import GatewaySettings, RealtimeSettings
from kiosk.sim import Simulator

FAST = RealtimeSettings(connect_timeout_s=2.0)
LOOPBACK = GatewaySettings(url="http://127.0.0.1")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def grant_for(sim: Simulator, key_file: Path) -> Grant:
    return GatewayClient(GatewaySettings(url=sim.gateway_url, api_key_file=str(key_file)),
                         RealtimeSettings()).create_grant()


def fake_grant(url: str) -> Grant:
    return Grant(url=url, model="m", token="t", expires_at=2e9, session_id="s",
                 conversation_id=None, voice_config={})


def test_open_configure_and_close(sim: Simulator, key_file: Path) -> None:
    grant = grant_for(sim, key_file)

    async def scenario() -> Link:
        link = Link(grant, FAST, LOOPBACK, None)
        await link.open()
        assert link.session["type"] == "realtime"
        await link.close()
        await link.close()  # idempotent
        assert not await link.send({"type": "input_audio_buffer.clear"})
        return link

    run(scenario())
    conn = sim.last_connection
    assert conn.headers["authorization"] == f"Bearer {grant.token}"
    assert "openai-beta" not in conn.headers
    assert conn.client_types() == ["session.update"]
    sim.wait_for(lambda: not conn.open)
    assert conn.close_code == 1000


def test_expired_token_is_refused_with_close_3000(sim: Simulator, key_file: Path) -> None:
    grant = grant_for(sim, key_file)
    sim.expire_tokens()
    with pytest.raises(LinkError) as err:
        run(Link(grant, FAST, LOOPBACK, None).open())
    assert err.value.kind == "auth" and err.value.close_code == 3000
    assert "invalid_api_key" in err.value.message


def test_a_voice_the_service_lacks_is_left_out(sim: Simulator, key_file: Path) -> None:
    grant = grant_for(sim, key_file)
    grant = replace(grant, voice_config={**grant.voice_config, "voice": "nova"})

    async def scenario() -> None:
        link = Link(grant, FAST, LOOPBACK, None)
        await link.open()
        await link.close()

    run(scenario())
    voice = sim.last_connection.events_of("session.update")[0]["session"]["audio"]["output"]
    assert "voice" not in voice


def test_unreachable_service_is_a_network_error() -> None:
    with pytest.raises(LinkError) as err:
        run(Link(fake_grant("ws://127.0.0.1:9/v1/realtime"), FAST, LOOPBACK, None).open())
    assert err.value.kind == "network" and "cannot connect" in err.value.message


def test_unencrypted_links_leave_this_machine_only_when_allowed() -> None:
    grant = fake_grant("ws://speech.example.org/v1/realtime")
    with pytest.raises(LinkError) as err:
        run(Link(grant, FAST, LOOPBACK, None).open())
    assert err.value.kind == "config" and "allow_insecure" in err.value.message


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts the WebSocket and then says nothing (no session.created)."""
    release = threading.Event()

    def handler(ws: Any) -> None:
        release.wait(5)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/v1/realtime"
        release.set()
        server.shutdown()


def test_no_session_created_times_out(silent_server: str) -> None:
    with pytest.raises(LinkError) as err:
        run(Link(fake_grant(silent_server), RealtimeSettings(connect_timeout_s=0.5),
                 LOOPBACK, None).open())
    assert err.value.kind == "network" and "no session.created" in err.value.message


def test_a_redirect_is_not_followed_with_the_token(silent_server: str) -> None:
    """A 302 to another server: following it would hand that server the bearer token."""
    seen: list[Any] = []

    def redirect(connection: Any, request: Any) -> Response:
        seen.append(request.path)
        return Response(302, "Found", Headers([("Location", silent_server)]))

    with serve(lambda ws: None, "127.0.0.1", 0, process_request=redirect) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/v1/realtime"
        with pytest.raises(LinkError) as err:
            run(Link(fake_grant(url), FAST, LOOPBACK, None).open())
        server.shutdown()
    assert len(seen) == 1  # asked once, never followed
    assert err.value.kind == "network" and "302" in err.value.message


def test_unknown_events_pass_and_junk_is_dropped(sim: Simulator, key_file: Path) -> None:
    grant = grant_for(sim, key_file)

    async def scenario() -> tuple[Link, list[str]]:
        link = Link(grant, RealtimeSettings(max_message_kib=64), LOOPBACK, None)
        await link.open()
        for kind in ("unknown_event", "bad_json", "binary"):
            sim.inject(kind)
        sim.inject("error", code="response_cancel_not_active")
        types = []
        while "error" not in types:
            types.append((await link.recv())["type"])
        await link.close()
        with pytest.raises(LinkClosed):
            await link.recv()
        return link, types

    link, types = run(scenario())
    assert types == ["future.event_kind", "error"]
    assert link.dropped_messages == 2


def test_realtime_url_sets_the_model_once_and_keeps_other_parameters() -> None:
    assert realtime_url("wss://api.openai.com/v1/realtime", "gpt-realtime") == \
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert realtime_url("wss://gw.example/v1/realtime?model=retired&region=eu",
                        "gpt-realtime") == \
        "wss://gw.example/v1/realtime?region=eu&model=gpt-realtime"


def test_a_model_the_service_does_not_offer_says_which_setting_to_change(
        sim: Simulator, key_file: Path) -> None:
    gateway = GatewaySettings(url=sim.gateway_url, api_key_file=str(key_file))
    no_override = RealtimeSettings(model=None)  # take the gateway's: a retired preview model
    grant = GatewayClient(gateway, no_override).create_grant()
    with pytest.raises(LinkError) as err:
        run(Link(grant, no_override, LOOPBACK, None).open())
    assert err.value.kind == "config" and "model_not_found" in err.value.message
    assert "set realtime.model" in err.value.message

"""The simulator over TLS with a certificate from a private CA, as a hospital gateway is:
trusted with the CA, refused without it, on the gateway and on the realtime endpoint."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from kiosk.sim import Simulator
from tests.tlsca import PrivateCA

SESSION = "/api/voice/realtime-session"


def fetch_grant(url: str, key: str, ctx: ssl.SSLContext) -> dict[str, Any]:
    req = urllib.request.Request(url + SESSION, data=b"{}", method="POST",
                                 headers={"X-API-Key": key, "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=ctx))
    with opener.open(req, timeout=5) as resp:
        return json.loads(resp.read())


def first_event(url: str, token: str, ctx: ssl.SSLContext) -> dict[str, Any]:
    with connect(url + "?model=gpt-realtime", ssl=ctx, open_timeout=5,
                 additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        return json.loads(ws.recv(timeout=5))


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCA:
    return PrivateCA(tmp_path / "ca")


def test_https_and_wss_trusted_through_the_private_ca(ca: PrivateCA) -> None:
    with Simulator(tls=ca.server_files) as sim:
        assert sim.gateway_url.startswith("https://127.0.0.1:")
        assert sim.realtime_url.startswith("wss://127.0.0.1:")
        grant = fetch_grant(sim.gateway_url, sim.api_key, ca.client_context())
        assert grant["url"] == sim.realtime_url
        event = first_event(grant["url"], grant["auth"]["token"], ca.client_context())
        assert event["type"] == "session.created"
        by_name = sim.gateway_url.replace("127.0.0.1", "localhost")
        assert fetch_grant(by_name, sim.api_key, ca.client_context())["model"]


def test_without_the_ca_both_endpoints_are_refused(ca: PrivateCA) -> None:
    system_trust = ssl.create_default_context()
    with Simulator(tls=ca.server_files) as sim:
        with pytest.raises(urllib.error.URLError) as refused:
            fetch_grant(sim.gateway_url, sim.api_key, system_trust)
        assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
        grant = fetch_grant(sim.gateway_url, sim.api_key, ca.client_context())  # still serves
        with pytest.raises(ssl.SSLCertVerificationError):
            first_event(grant["url"], grant["auth"]["token"], system_trust)
        assert sim.connections.total == 0  # the refused handshake never reached the service
        assert len(sim.gateway_requests) == 1


def test_another_ca_is_not_enough(ca: PrivateCA, tmp_path: Path) -> None:
    stranger = PrivateCA(tmp_path / "stranger")
    with Simulator(tls=ca.server_files) as sim, pytest.raises(urllib.error.URLError):
        fetch_grant(sim.gateway_url, sim.api_key, stranger.client_context())

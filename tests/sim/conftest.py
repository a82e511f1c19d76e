"""Fixtures for testing the simulator itself: it running, and a raw WebSocket peer that sees
exactly what the simulator puts on the wire."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import websocket

from kiosk.sim import Simulator

UNKNOWN_EVENT = "future.event_kind"
"""What inject("unknown_event") sends: not an official type, on purpose."""


def assert_official(sim: Simulator) -> None:
    """Every event the simulator sent on every connection it still remembers validates
    against the openai package's GA server event types (strictly, no undeclared fields)."""
    from tests.session.test_wire_types import SERVER, check

    for conn in sim.connections:
        check(SERVER, [e for e in conn.server_events if e["type"] != UNKNOWN_EVENT])


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A running simulator; whatever a test made it send is checked against the official
    event types afterwards."""
    with Simulator() as s:
        yield s
    assert_official(s)


def post(sim: Simulator, path: str, body: dict[str, Any],
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    req = urllib.request.Request(sim.gateway_url + path, data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         **(headers or {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, _parse(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, _parse(exc.read()), dict(exc.headers)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        return json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")}


def grant(sim: Simulator) -> dict[str, Any]:
    status, body, _ = post(sim, "/api/voice/realtime-session", {},
                           {"X-API-Key": sim.api_key})
    assert status == 200, body
    return body


class Peer:
    """A bare websocket-client connection: sends dicts, reads raw events."""

    def __init__(self, url: str, token: str | None, headers: list[str] | None = None, *,
                 model: str = "gpt-realtime") -> None:
        head = list(headers or [])
        if token:
            head.append(f"Authorization: Bearer {token}")
        self.ws = websocket.create_connection(f"{url}?model={model}", timeout=5,
                                              header=head, suppress_origin=True)
        self.close_code: int | None = None

    def send(self, event: dict[str, Any]) -> None:
        self.ws.send(json.dumps(event))

    def append(self, pcm: np.ndarray, chunk: int = 2400) -> None:
        for start in range(0, len(pcm), chunk):
            data = pcm[start:start + chunk].astype("<i2").tobytes()
            self.send({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(data).decode()})

    def next(self, kind: str | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
        """The next event (of `kind`, skipping others); raises on close or timeout."""
        self.ws.settimeout(timeout_s)
        while True:
            opcode, frame = self.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close_code = int.from_bytes(frame.data[:2], "big") if frame.data else None
                raise ConnectionError(f"closed {self.close_code}")
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            event = json.loads(frame.data)
            if kind is None or event["type"] == kind:
                return event

    def until(self, kind: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """All events up to and including the first `kind`."""
        seen = []
        while True:
            event = self.next(timeout_s=timeout_s)
            seen.append(event)
            if event["type"] == kind:
                return seen

    def close(self) -> None:
        self.ws.close(timeout=1)


@pytest.fixture
def peer(sim: Simulator) -> Iterator[Peer]:
    g = grant(sim)
    p = Peer(g["url"], g["auth"]["token"])
    p.next("session.created")
    yield p
    p.close()

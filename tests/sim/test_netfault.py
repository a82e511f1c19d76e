"""The TCP relay's faults are real socket behaviour: a stall fills buffers until a sender
blocks and then delivers everything on resume, a drop resets both sides."""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from kiosk.sim import Simulator
from kiosk.sim.netfault import Relay
from tests.sim.conftest import grant

MIB = 1024 * 1024


class Upstream:
    """A TCP server with one connection: keeps what it receives, sends what it is told."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = self._listener.getsockname()
        self.data = bytearray()
        self.error: OSError | None = None
        self.conn: socket.socket | None = None
        self._changed = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with self._changed:
            self.conn = conn
            self._changed.notify_all()
        try:
            while chunk := conn.recv(MIB):
                with self._changed:
                    self.data += chunk
                    self._changed.notify_all()
        except OSError as exc:
            with self._changed:
                self.error = exc
                self._changed.notify_all()

    def wait(self, predicate, timeout_s: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout_s):
                raise TimeoutError("upstream: condition not met")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self._listener.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


@pytest.fixture
def relayed(upstream: Upstream) -> Iterator[tuple[Relay, socket.socket]]:
    with Relay(upstream.address) as relay:
        client = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
        client.sendall(b"hello")
        upstream.wait(lambda: upstream.data == b"hello")
        yield relay, client
        client.close()


def test_stall_blocks_the_sender_and_resume_delivers_every_byte(
        relayed: tuple[Relay, socket.socket], upstream: Upstream) -> None:
    relay, client = relayed
    relay.stall()
    client.setblocking(False)
    sent = 0
    pattern = bytes(range(256)) * 256  # 64 KiB that shows any reordering
    while True:
        try:
            sent += client.send(pattern)
        except BlockingIOError:
            break  # the kernel's buffers are full: a blocking send would wait here
        assert sent < 64 * MIB, "the stalled relay kept accepting data"
    assert not select.select([], [client], [], 0.5)[1]  # and it stays blocked
    with pytest.raises(TimeoutError):  # nothing reaches the server meanwhile
        upstream.wait(lambda: len(upstream.data) >= 5 + sent, timeout_s=0.5)
    assert relay.open_connections == 1  # the link is half open, not closed
    relay.resume()
    client.setblocking(True)
    upstream.wait(lambda: len(upstream.data) == 5 + sent)
    expected = (pattern * (sent // len(pattern) + 1))[:sent]
    assert upstream.data[5:] == expected


def test_stall_holds_the_answer_too(relayed: tuple[Relay, socket.socket],
                                    upstream: Upstream) -> None:
    relay, client = relayed
    relay.stall()
    assert upstream.conn is not None
    upstream.conn.sendall(b"answer")
    client.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.recv(100)
    relay.resume()
    client.settimeout(5)
    assert client.recv(100) == b"answer"


def test_drop_resets_both_sides(relayed: tuple[Relay, socket.socket],
                                upstream: Upstream) -> None:
    relay, client = relayed
    assert relay.drop() == 1
    with pytest.raises(ConnectionResetError):
        client.recv(100)
    upstream.wait(lambda: upstream.error is not None)
    assert isinstance(upstream.error, ConnectionResetError)
    assert relay.open_connections == 0 and relay.resets == 1


def test_drop_after_a_number_of_bytes(relayed: tuple[Relay, socket.socket],
                                      upstream: Upstream) -> None:
    relay, client = relayed
    relay.drop_after(1000, "down")
    assert upstream.conn is not None
    upstream.conn.sendall(b"d" * 5000)
    got = b""
    with pytest.raises(ConnectionResetError):
        while chunk := client.recv(65536):
            got += chunk
    assert got == b"d" * 1000
    assert relay.bytes_down == 1000


def test_a_websocket_through_the_relay_is_cut_mid_answer() -> None:
    """The knob that points grants at the relay, and a drop the server never sees coming."""
    with Simulator(answer_s=4.0, stream_speed=1.0) as sim, Relay(sim.realtime_url) as relay:
        sim.knobs.realtime_url = relay.url("ws", "/v1/realtime")
        g = grant(sim)
        assert g["url"] == relay.url("ws", "/v1/realtime")
        with connect(g["url"] + "?model=gpt-realtime", open_timeout=5,
                     additional_headers={"Authorization": f"Bearer {g['auth']['token']}"}
                     ) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
            ws.send(json.dumps({"type": "response.create"}))
            while json.loads(ws.recv(timeout=5))["type"] != "response.output_audio.delta":
                pass
            relay.drop()
            sim.wait_for(lambda: not sim.last_connection.open)
            with pytest.raises(Exception) as cut:  # noqa: B017 - any way the link ends
                while True:
                    ws.recv(timeout=5)
            assert "ConnectionClosed" in type(cut.value).__name__  # not a recv timeout
        sim.wait_for(lambda: sim.last_connection.cancelled_responses)  # the answer stopped

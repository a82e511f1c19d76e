"""Network faults made at the socket: a TCP relay to put between a client and a server.

Faults that a simulator can only fake at the protocol level (it stops answering, it closes)
look different to a client from what a hospital network really does: a Wi-Fi roam or a
stateful firewall that forgets a connection leaves the link *half open*, the kernel keeps
accepting what the client sends until its buffers fill, and then the client's `send` blocks.
This relay makes those faults with real sockets:

    with Relay(sim.realtime_url) as relay:
        sim.knobs.realtime_url = relay.url("ws", "/v1/realtime")   # grants point at it
        ...
        relay.stall()        # nothing moves either way; sockets stay open (half-open link)
        relay.resume()       # everything held back flows again
        relay.drop()         # reset both sides now (RST, SO_LINGER 0)
        relay.drop_after(50_000, "down")  # reset once 50 kB more reached the client

TLS passes through untouched (the relay never looks inside), so a certificate made for
127.0.0.1 stays valid. One thread serves all connections of a relay.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHUNK = 65536
DIRECTIONS = ("up", "down", "both")


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    up: bytearray = field(default_factory=bytearray)  # client -> server, not yet written
    down: bytearray = field(default_factory=bytearray)  # server -> client, not yet written
    up_eof: bool = False  # the client closed its sending side
    down_eof: bool = False  # the server closed its sending side
    up_shut: bool = False  # ... and that was passed on
    down_shut: bool = False
    spent: str | None = None  # drop_after's budget ran out on this way: reset when flushed

    def reads(self) -> list[socket.socket]:
        if self.spent:
            return []
        return ([self.client] if not self.up_eof and len(self.up) < CHUNK else []) + (
            [self.server] if not self.down_eof and len(self.down) < CHUNK else [])

    def writes(self) -> list[socket.socket]:
        return ([self.server] if self.up else []) + ([self.client] if self.down else [])

    def flushed(self, way: str) -> bool:
        return {"up": not self.up, "down": not self.down}.get(way, not self.up and not self.down)


class Relay:
    """TCP relay from a loopback port to `upstream` (a URL or (host, port)).

    buffer_bytes: receive and send buffer size of the relay's own sockets. Small buffers make
    a stalled link block the sender after little data, as a real congested link does; None
    keeps the kernel's (which on loopback can absorb megabytes before a sender blocks).
    """

    def __init__(self, upstream: str | tuple[str, int], *, host: str = "127.0.0.1",
                 port: int = 0, buffer_bytes: int | None = 65536) -> None:
        if isinstance(upstream, str):
            parts = urlsplit(upstream)
            default = 443 if parts.scheme in ("https", "wss") else 80
            upstream = (parts.hostname or "127.0.0.1", parts.port or default)
        self.upstream = upstream
        self.buffer_bytes = buffer_bytes
        self._listener = socket.create_server((host, port))
        self._tune(self._listener)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._stalled = False
        self._drop_now = threading.Event()
        self._dropped = threading.Event()
        self._budget: tuple[int, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netfault-relay", daemon=True)
        self.accepted = 0
        """Connections accepted so far."""
        self.resets = 0
        """Connections reset by drop() or drop_after()."""
        self.bytes_up = 0
        """Bytes read from clients (on their way to the server)."""
        self.bytes_down = 0
        """Bytes read from the server (on their way to clients)."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Relay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(5.0)
        with self._lock:
            for pair in self._pairs:
                _close(pair.client)
                _close(pair.server)
            self._pairs.clear()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url(self, scheme: str = "http", path: str = "") -> str:
        """The relay's address as a URL, e.g. url("ws", "/v1/realtime")."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    # -- faults ------------------------------------------------------------------------------

    def stall(self) -> None:
        """Stop reading from and writing to every connection, present and future, while
        keeping the sockets open: a half-open link. Senders block once buffers fill."""
        with self._lock:
            self._stalled = True
        self._wake()

    def resume(self) -> None:
        """Forward again, including everything held back during the stall."""
        with self._lock:
            self._stalled = False
        self._wake()

    passthrough = resume

    def drop(self, timeout_s: float = 5.0) -> int:
        """Reset every open connection now, both sides (RST, SO_LINGER 0); returns how many.
        New connections are relayed as usual afterwards."""
        self._dropped.clear()
        with self._lock:
            count = len(self._pairs)
        self._drop_now.set()
        self._wake()
        if not self._dropped.wait(timeout_s):
            raise TimeoutError("relay: drop not carried out")
        return count

    def drop_after(self, n_bytes: int | None, direction: str = "both") -> None:
        """Reset the connection that carries the next `n_bytes` bytes in `direction` ("up":
        client to server, "down": server to client, "both"), after forwarding exactly those
        bytes. One-shot; None disarms."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        if n_bytes is not None and n_bytes < 1:
            raise ValueError("drop_after needs at least one byte; use drop() for now")
        with self._lock:
            self._budget = None if n_bytes is None else (n_bytes, direction)
        self._wake()

    # -- the loop ----------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _tune(self, sock: socket.socket) -> None:
        if self.buffer_bytes:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_bytes)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.buffer_bytes)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._drop_now.is_set():
                self._drop_now.clear()
                with self._lock:
                    pairs, self._pairs = self._pairs, []
                for pair in pairs:
                    self._reset(pair)
                self._dropped.set()
            readers, writers = self._interest()
            try:
                readable, writable, _ = select.select(readers, writers, [], 0.5)
            except (OSError, ValueError):
                continue  # a socket closed under us: rebuild the lists
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            if self._listener in readable:
                self._accept()
            with self._lock:
                stalled, pairs = self._stalled, list(self._pairs)
            if stalled:
                continue
            for pair in pairs:
                self._pump(pair, readable, writable)

    def _interest(self) -> tuple[list[socket.socket], list[socket.socket]]:
        readers: list[socket.socket] = [self._wake_r, self._listener]
        writers: list[socket.socket] = []
        with self._lock:
            if not self._stalled:
                for pair in self._pairs:
                    readers += pair.reads()
                    writers += pair.writes()
        return readers, writers

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.accepted += 1
        try:
            server = socket.create_connection(self.upstream, timeout=5.0)
        except OSError:
            self._reset(_Pair(client, socket.socket()))
            return
        for sock in (client, server):
            self._tune(sock)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._pairs.append(_Pair(client, server))

    def _pump(self, pair: _Pair, readable: list[socket.socket],
              writable: list[socket.socket]) -> None:
        try:
            if pair.client in readable:
                pair.up_eof = not self._read(pair, pair.client, pair.up, "up")
            if pair.server in readable:
                pair.down_eof = not self._read(pair, pair.server, pair.down, "down")
            if pair.server in writable and pair.up:
                del pair.up[:pair.server.send(pair.up)]
            if pair.client in writable and pair.down:
                del pair.down[:pair.client.send(pair.down)]
            if pair.up_eof and not pair.up and not pair.up_shut:
                pair.up_shut = True
                pair.server.shutdown(socket.SHUT_WR)  # pass the half-close on
            if pair.down_eof and not pair.down and not pair.down_shut:
                pair.down_shut = True
                pair.client.shutdown(socket.SHUT_WR)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # a side reset: pass it on
            self._forget(pair)
            self._reset(pair)
            return
        if pair.spent and pair.flushed(pair.spent):
            self._forget(pair)
            self._reset(pair)
        elif pair.up_shut and pair.down_shut:
            self._forget(pair)
            _close(pair.client)
            _close(pair.server)

    def _read(self, pair: _Pair, sock: socket.socket, buffer: bytearray, way: str) -> bool:
        """Read what `sock` has (at most what a drop_after budget allows); False at EOF."""
        with self._lock:
            budget = self._budget
        limit = CHUNK
        if budget is not None and budget[1] in (way, "both"):
            limit = min(limit, budget[0])
        data = sock.recv(limit)
        if not data:
            return False
        buffer += data
        if way == "up":
            self.bytes_up += len(data)
        else:
            self.bytes_down += len(data)
        with self._lock:
            if self._budget is not None and self._budget[1] in (way, "both"):
                left = self._budget[0] - len(data)
                self._budget = (left, self._budget[1]) if left > 0 else None
                if left <= 0:
                    pair.spent = budget[1] if budget else way
        return True

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)

    def _reset(self, pair: _Pair) -> None:
        self.resets += 1
        for sock in (pair.client, pair.server):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()

"""Both halves of keeping a copy of a simulator's records in another process.

`delta()` runs beside the simulator: given what the copy already holds (its version and how
far each record list got), it returns only what is new. `Mirror` runs in the test process:
it applies deltas to records of the same classes, so a test reads `conn.audio`,
`conn.events_of(...)`, `sim.gateway_requests[-1]` exactly as with an in-process simulator.

Records only grow at the end (see `records.BoundedList`), which is what makes a delta small:
a connection streaming microphone audio sends each chunk across once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kiosk.sim.records import (
    LOG_FIELDS,
    SCALAR_FIELDS,
    BoundedList,
    GatewayRequest,
    Limits,
    RealtimeConnection,
)

if TYPE_CHECKING:
    from kiosk.sim.simulator import Simulator

Cursor = dict[str, int]
"""How far a copy of one connection got: list name -> items appended so far (`total`)."""

_LIVE = frozenset((*LOG_FIELDS, *SCALAR_FIELDS, "audio_chunks"))


def delta(sim: Simulator, since: int, gateway_total: int,
          cursors: dict[int, Cursor]) -> dict[str, Any]:
    """What changed in `sim`'s records after version `since`, for a copy that holds the
    first `gateway_total` gateway requests and the connections in `cursors`."""
    with sim.lock:
        out: dict[str, Any] = {
            "version": sim.version,
            "gateway": sim.gateway_requests.since(gateway_total),
            "gateway_total": sim.gateway_requests.total,
            "connections_dropped": sim.connections.dropped,
            "connections": []}
        for rec in sim.connections:
            cursor = cursors.get(rec.index)
            if cursor is not None and rec.version <= since:
                continue
            cursor = cursor or {}
            audio = rec.audio_chunks
            out["connections"].append({
                "index": rec.index, "path": rec.path, "headers": rec.headers,
                "scalars": {name: getattr(rec, name) for name in SCALAR_FIELDS},
                "logs": {name: (getattr(rec, name).since(cursor.get(name, 0)),
                                getattr(rec, name).total) for name in LOG_FIELDS},
                "audio": (audio.since(cursor.get("audio_chunks", 0)), audio.chunks_total,
                          audio.dropped_samples)})
        return out


class MirroredConnection(RealtimeConnection):
    """A RealtimeConnection kept up to date from another process: reading any of its record
    fields first fetches what changed, so a reference held across a wait stays current."""

    _refresh: Callable[[], None] | None = None

    def __getattribute__(self, name: str) -> Any:
        if name in _LIVE:
            refresh = object.__getattribute__(self, "_refresh")
            if refresh is not None:
                refresh()
        return object.__getattribute__(self, name)


class Mirror:
    """The test process's copy of a remote simulator's records.

    fetch(since, gateway_total, cursors, wait_s) must return `delta(...)` from the other
    side, after waiting up to wait_s for a change past `since`."""

    def __init__(self, limits: Limits,
                 fetch: Callable[[int, int, dict[int, Cursor], float], dict[str, Any]]) -> None:
        self.limits = limits
        self._fetch = fetch
        self.version = -1
        self.gateway_requests: BoundedList[GatewayRequest] = BoundedList(
            limits.max_gateway_requests)
        self.connections: BoundedList[MirroredConnection] = BoundedList(
            limits.max_connections)
        self._lock = threading.RLock()
        self._quiet = 0  # > 0: reads do not fetch (while applying, or evaluating a predicate)

    def refresh(self, wait_s: float = 0.0) -> bool:
        """Fetch and apply what changed (waiting up to wait_s for a change); True if any."""
        with self._lock:
            if self._quiet:
                return False
            cursors = {c.index: self._cursor(c) for c in self.connections}
            answer = self._fetch(self.version, self.gateway_requests.total, cursors, wait_s)
            changed = answer["version"] != self.version
            with self.quiet():
                self._apply(answer)
            return changed

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Reads inside do not fetch: a consistent view, and no round trip per field."""
        with self._lock:
            self._quiet += 1
            try:
                yield
            finally:
                self._quiet -= 1

    def _cursor(self, conn: MirroredConnection) -> Cursor:
        with self.quiet():
            cursor = {name: getattr(conn, name).total for name in LOG_FIELDS}
            cursor["audio_chunks"] = conn.audio_chunks.chunks_total
        return cursor

    def _apply(self, answer: dict[str, Any]) -> None:
        self.version = answer["version"]
        _catch_up(self.gateway_requests, answer["gateway"], answer["gateway_total"])
        known = {c.index: c for c in self.connections}
        for entry in answer["connections"]:
            conn = known.get(entry["index"])
            if conn is None:
                conn = MirroredConnection.create(entry["index"], entry["path"],
                                                 entry["headers"], self.limits)
                object.__setattr__(conn, "_refresh", self.refresh)
                self.connections.append(conn)
            for name, value in entry["scalars"].items():
                setattr(conn, name, value)
            for name, (items, total) in entry["logs"].items():
                _catch_up(getattr(conn, name), items, total)
            chunks, chunks_total, dropped_samples = entry["audio"]
            audio = conn.audio_chunks
            if chunks_total - len(chunks) > audio.chunks_total:
                audio.clear()  # fell further behind than the other side keeps: start over
            for chunk in chunks:
                audio.append(chunk)
            audio.chunks_total, audio.dropped_samples = chunks_total, dropped_samples
        self.connections.dropped = answer["connections_dropped"]


def _catch_up(log: BoundedList[Any], items: list[Any], total: int) -> None:
    """Append what the other side appended after `log.total`; `items` are its newest."""
    if total - len(items) > log.total:
        log.clear()  # fell further behind than the other side keeps: start over
    log.extend(items)
    log.dropped = total - len(log)

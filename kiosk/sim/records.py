"""What the simulator remembers for tests, kept bounded.

All records are changed under the simulator's condition variable, so a test can wait for
"the server received X" with `Simulator.wait_for(predicate, timeout_s)` instead of sleeping.

Patient speech is health data and a test run can be long (the endurance test, a demo left
running): every record here has a limit. The simulator keeps the newest connections and
gateway requests, the newest events of each connection, and at most `Limits.max_audio_s` of
decoded microphone audio per connection; what was dropped is counted, so a test can tell a
bounded record from a short one. Nothing is ever written to disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

import numpy as np

from kiosk.sim.knobs import SimKnobs

__all__ = ["AudioLog", "BoundedList", "GatewayRequest", "Limits", "RealtimeConnection",
           "SimKnobs", "wait_until"]

T = TypeVar("T")
SAMPLE_RATE_HZ = 24000


@dataclass(frozen=True)
class Limits:
    """How much the simulator remembers. Defaults hold any single test comfortably."""

    max_connections: int = 64
    """Newest realtime connections kept in `Simulator.connections`."""
    max_gateway_requests: int = 256
    """Newest gateway requests kept in `Simulator.gateway_requests`."""
    max_audio_s: float = 120.0
    """Decoded microphone audio kept per connection (the oldest is dropped first)."""
    max_events: int = 2000
    """Newest client events and server events kept per connection (each list)."""

    @property
    def max_audio_samples(self) -> int:
        return int(self.max_audio_s * SAMPLE_RATE_HZ)


class BoundedList(list[T], Generic[T]):
    """A list that keeps only its newest `limit` items; `dropped` counts the ones let go.

    Items are only ever appended, so an item's absolute position (`total` at the time it was
    appended) never changes: `since(n)` is what was appended after the first n."""

    def __init__(self, limit: int, items: Iterable[T] = ()) -> None:
        super().__init__()
        self.limit = max(1, limit)
        self.dropped = 0
        self.extend(items)

    def append(self, item: T) -> None:
        super().append(item)
        excess = len(self) - self.limit
        if excess > 0:
            del self[:excess]
            self.dropped += excess

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    @property
    def total(self) -> int:
        """Items ever appended."""
        return self.dropped + len(self)

    def since(self, total: int) -> list[T]:
        """Items appended after the first `total` that are still held."""
        return list(self[max(0, total - self.dropped):])


class AudioLog(list[np.ndarray]):
    """Decoded audio chunks, at most `max_samples` in all: the oldest samples are dropped
    first (a chunk may be cut), and `dropped_samples` counts them."""

    def __init__(self, max_samples: int) -> None:
        super().__init__()
        self.max_samples = max(1, max_samples)
        self.samples = 0
        self.dropped_samples = 0
        self.chunks_total = 0

    def append(self, chunk: np.ndarray) -> None:
        super().append(chunk)
        self.samples += len(chunk)
        self.chunks_total += 1
        while self.samples > self.max_samples:
            excess = self.samples - self.max_samples
            first = self[0]
            if len(first) <= excess:
                del self[0]
                cut = len(first)
            else:
                self[0] = first[excess:]
                cut = excess
            self.samples -= cut
            self.dropped_samples += cut

    def clear(self) -> None:
        """Forget every chunk (counted as dropped)."""
        self.dropped_samples += self.samples
        self.samples = 0
        super().clear()

    def since(self, chunks_total: int) -> list[np.ndarray]:
        """Chunks appended after the first `chunks_total` that are still (partly) held."""
        first_held = self.chunks_total - len(self)
        return list(self[max(0, chunks_total - first_held):])

    def concatenated(self) -> np.ndarray:
        if not self:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self)


@dataclass
class GatewayRequest:
    """One request the gateway answered. Headers are in lower case."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0


LOG_FIELDS = ("client_events", "bad_messages", "server_events", "speech_stopped_at",
              "truncations", "cancelled_responses")
"""The append-only lists of a RealtimeConnection (besides its audio)."""
SCALAR_FIELDS = ("token", "close_code", "open", "session")
"""The fields of a RealtimeConnection that are replaced, not appended to."""


def _log(limits: Limits | None = None) -> Any:
    return field(default_factory=lambda: BoundedList((limits or Limits()).max_events))


@dataclass
class RealtimeConnection:
    """One WebSocket connection as the server saw it (newest events only, see Limits)."""

    index: int
    """Absolute number of the connection (0 for the simulator's first one)."""
    path: str
    headers: dict[str, str]
    token: str | None = None
    client_events: BoundedList[dict[str, Any]] = _log()
    bad_messages: BoundedList[str] = _log()
    server_events: BoundedList[dict[str, Any]] = _log()
    audio_chunks: AudioLog = field(
        default_factory=lambda: AudioLog(Limits().max_audio_samples))
    speech_stopped_at: BoundedList[float] = _log()
    """time.monotonic() when each speech_stopped was sent: end of the patient's turn."""
    truncations: BoundedList[dict[str, Any]] = _log()
    """Accepted conversation.item.truncate: item_id, audio_end_ms, sent_ms (audio sent)."""
    cancelled_responses: BoundedList[str] = _log()
    close_code: int | None = None
    open: bool = True
    session: dict[str, Any] = field(default_factory=dict)
    version: int = field(default=0, repr=False, compare=False)
    """The simulator's change counter when this record last changed (for remote mirrors)."""

    @classmethod
    def create(cls, index: int, path: str, headers: dict[str, str],
               limits: Limits) -> Self:
        """A record whose lists follow `limits`."""
        record = cls(index, path, headers)
        for name in LOG_FIELDS:
            setattr(record, name, BoundedList(limits.max_events))
        record.audio_chunks = AudioLog(limits.max_audio_samples)
        return record

    @property
    def audio(self) -> np.ndarray:
        """The appended audio still held, decoded: int16 at 24 kHz, in arrival order."""
        return self.audio_chunks.concatenated()

    @property
    def audio_dropped_samples(self) -> int:
        """Samples of microphone audio let go because the connection streamed longer than
        `Limits.max_audio_s`; `len(audio) + audio_dropped_samples` is all that arrived."""
        return self.audio_chunks.dropped_samples

    def client_types(self) -> list[str]:
        return [e.get("type", "") for e in self.client_events]

    def server_types(self) -> list[str]:
        return [e.get("type", "") for e in self.server_events]

    def events_of(self, kind: str, *, sent: bool = False) -> list[dict[str, Any]]:
        """Client events of `kind` (or with sent=True, events the server sent)."""
        source = self.server_events if sent else self.client_events
        return [e for e in source if e.get("type") == kind]


def wait_until(predicate: Callable[[], Any], timeout_s: float,
               wait: Callable[[float], object]) -> Any:
    """predicate()'s first truthy value, evaluated again after each `wait(remaining_s)` (which
    returns when the records may have changed); TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"simulator: condition not met within {timeout_s:g} s")
        wait(remaining)

"""Bookkeeping of one session's turns: which answer item is playing, how much of it arrived,
which responses were barged in on (their late deltas are dropped), and the counters and
latencies a session leaves behind for metrics. No I/O, no threads of its own; thread-safe."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from kiosk.events import Event, Fault, SessionEnded
from kiosk.session import protocol as p
from kiosk.session.protocol import pcm_ms


@dataclass
class SessionStats:
    """Counters and latencies of one session (read them after end() or while it runs)."""

    session_id: str = ""
    reconnects: int = 0
    press_to_ready_s: float | None = None
    """Button press (start()) to the realtime session being configured."""
    answer_latencies_s: list[float] = field(default_factory=list)
    """Server's speech_stopped to the first answer audio received, per turn."""
    answer_start_latencies_s: list[float] = field(default_factory=list)
    """Server's speech_stopped to the answer's first sample reaching the speaker, per turn."""
    turns: int = 0
    barge_ins: int = 0
    audio_sent_ms: int = 0
    replayed_ms: int = 0
    """Uncommitted audio sent again after a reconnect."""
    backlog_ms: int = 0
    """Audio captured before the session was ready and sent once it was (no lost words)."""
    answer_audio_ms: int = 0
    dropped_deltas: int = 0
    dropped_messages: int = 0
    gateway_failures: int = 0
    ended_by: str = ""


class AnswerTracker:
    """What the kiosk knows about the assistant's audio in the current session."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received_bytes: dict[str, int] = {}  # item id -> answer audio bytes received
        self.item_response: dict[str, str] = {}
        self.dropped: set[str] = set()  # response ids whose further audio is ignored
        self.active_response: str | None = None  # response.created and not yet done
        self.responses_with_audio: set[str] = set()
        self.ended_items: set[str] = set()  # items whose audio is complete
        self.playing_item: str | None = None  # written to playback, not yet drained/flushed
        self.speech_stopped_at: float | None = None
        self.first_audio_pending = False
        self.start_pending = False

    def response_created(self, response_id: str) -> None:
        with self.lock:
            self.active_response = response_id

    def accept_audio(self, response_id: str, item_id: str,
                     nbytes: int) -> tuple[bool, float | None]:
        """Record a delta; returns (play it?, answer latency if this is the turn's first)."""
        with self.lock:
            if response_id in self.dropped:
                return False, None
            self.received_bytes[item_id] = self.received_bytes.get(item_id, 0) + nbytes
            self.item_response[item_id] = response_id
            self.responses_with_audio.add(response_id)
            self.playing_item = item_id
            latency = None
            if self.first_audio_pending and self.speech_stopped_at is not None:
                latency = time.monotonic() - self.speech_stopped_at
                self.first_audio_pending = False
            return True, latency

    def speech_stopped(self) -> None:
        with self.lock:
            self.speech_stopped_at = time.monotonic()
            self.first_audio_pending = True
            self.start_pending = True

    def answer_started(self) -> float | None:
        """The speaker began an answer: latency from the end of speech, once per turn."""
        with self.lock:
            if self.start_pending and self.speech_stopped_at is not None:
                self.start_pending = False
                return time.monotonic() - self.speech_stopped_at
            return None

    def finished_playing(self, item_id: str) -> None:
        with self.lock:
            if self.playing_item == item_id:
                self.playing_item = None

    def audio_done(self, response_id: str, item_id: str) -> bool:
        """The item's audio is complete; returns False for a dropped (barged-in) response."""
        with self.lock:
            self.ended_items.add(item_id)
            return response_id not in self.dropped

    def response_done(self, response_id: str) -> tuple[bool, list[str]]:
        """(no audio at all, so no playback event will follow; items whose audio never got
        an audio done, e.g. cancelled by the server: they must be ended to play out)."""
        with self.lock:
            if self.active_response == response_id:
                self.active_response = None
            silent = response_id not in self.responses_with_audio
            open_items = [] if response_id in self.dropped else [
                item for item, resp in self.item_response.items()
                if resp == response_id and item not in self.ended_items]
            self.ended_items.update(open_items)
            return silent, open_items

    def begin_barge_in(self) -> tuple[str | None, str | None, int]:
        """Stop tracking the playing answer: (item_id, response_id, ms received) of what was
        playing; the response is marked dropped. (None, active response, 0) if nothing was."""
        with self.lock:
            item = self.playing_item
            if item is None:
                response = self.active_response
                if response is not None:
                    self.dropped.add(response)
                return None, response, 0
            response = self.item_response.get(item)
            if response is not None:
                self.dropped.add(response)
            self.playing_item = None
            return item, response, pcm_ms(self.received_bytes.get(item, 0))

    def connection_lost(self) -> str | None:
        """A reconnect starts a new service session: its responses will never finish. Returns
        the item still playing (to be played out), if any."""
        with self.lock:
            self.active_response = None
            return self.playing_item


class ReplayBuffer:
    """Audio sent on the current connection that the service has not yet committed to a turn.

    Appends are not acknowledged: when a link dies, whatever was in flight is lost with the
    service's uncommitted input buffer. On reconnect this audio is sent again first, so the
    patient's words survive the drop. Bounded by `max_ms` (oldest audio dropped first)."""

    def __init__(self, max_ms: int) -> None:
        self.max_ms = max_ms
        self._lock = threading.Lock()
        self._chunks: list[tuple[int, bytes]] = []  # (start ms on this connection, pcm)
        self._sent_ms = 0
        self._held_ms = 0

    def sent(self, pcm: bytes) -> None:
        ms = pcm_ms(len(pcm))
        with self._lock:
            self._chunks.append((self._sent_ms, pcm))
            self._sent_ms += ms
            self._held_ms += ms
            while self._held_ms > self.max_ms and len(self._chunks) > 1:
                self._held_ms -= pcm_ms(len(self._chunks.pop(0)[1]))

    def committed(self, audio_end_ms: int) -> None:
        """The service closed a turn at `audio_end_ms`: audio before it is safe."""
        with self._lock:
            while self._chunks and (self._chunks[0][0] + pcm_ms(len(self._chunks[0][1]))
                                    <= audio_end_ms):
                self._held_ms -= pcm_ms(len(self._chunks.pop(0)[1]))

    def take(self) -> list[bytes]:
        """Everything to resend on a new connection (whose timeline starts at 0 again)."""
        with self._lock:
            chunks = [pcm for _, pcm in self._chunks]
            self._chunks.clear()
            self._sent_ms = self._held_ms = 0
            return chunks


def close_outcome(code: int | None, expired: bool,
                  last_error: tuple[str, str] | None) -> Event | None:
    """What the end of a realtime connection means for the session: SessionEnded (the service's
    time cap, or a normal close by the service), a protocol Fault (close 4000), or None: the
    link was lost and the session should reconnect (this includes close 3000, a token that
    expired mid-session: a fresh grant fixes it)."""
    if expired or code == p.CLOSE_SESSION_EXPIRED:
        return SessionEnded("session_expired")
    if code == p.CLOSE_BAD_REQUEST:
        said = f" ({last_error[0]}: {last_error[1]})" if last_error else ""
        return Fault("protocol", f"realtime service rejected the kiosk's requests (close "
                                 f"4000){said}; update voice-kiosk or check realtime.url")
    if code == p.CLOSE_NORMAL:
        return SessionEnded("closed by the service")
    return None

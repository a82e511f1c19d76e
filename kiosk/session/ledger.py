"""The answer ledger of one link: which assistant item is playing, how much of each item
arrived, which responses were barged in on (their late audio is dropped), and the per-visit
counters a visit leaves behind for tests and metrics. Owned by the conversation's loop: one
thread, no locks. The speaker's own account (what really reached the device) stays in the
playback; the ledger only says what the service sent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kiosk.session.protocol import pcm_ms


@dataclass
class VisitStats:
    """Counters and latencies of one visit (read them after it ended, or in tests)."""

    visit_id: str = ""
    reconnects: int = 0
    press_to_ready_s: float | None = None
    """Button press to the first link being open and configured."""
    answer_latencies_s: list[float] = field(default_factory=list)
    """The service's speech_stopped to the first answer audio received, per turn."""
    answer_start_latencies_s: list[float] = field(default_factory=list)
    """The service's speech_stopped to the answer's first sample reaching the speaker."""
    turns: int = 0
    turns_asked_again: int = 0
    """Questions sent again after a link was lost before their answer."""
    barge_ins: int = 0
    audio_sent_ms: int = 0
    replayed_ms: int = 0
    """Uncommitted audio sent again after a reconnect."""
    backlog_ms: int = 0
    """Audio captured before the link was ready and sent once it was (no lost words)."""
    answer_audio_ms: int = 0
    dropped_deltas: int = 0
    dropped_messages: int = 0
    gateway_failures: int = 0
    ended_by: str = ""


class AnswerLedger:
    """What the kiosk knows about the assistant's audio on the current link."""

    def __init__(self) -> None:
        self.received_bytes: dict[str, int] = {}  # item id -> answer audio bytes received
        self.item_response: dict[str, str] = {}
        self.dropped: set[str] = set()  # response ids whose further audio is ignored
        self.active_response: str | None = None  # response.created and not yet done
        self.responses_with_audio: set[str] = set()
        self.ended_items: set[str] = set()  # items whose audio is complete
        self.playing_item: str | None = None  # written to playback, not yet drained/flushed
        self.speech_stopped_at: float | None = None
        self._first_audio_pending = False
        self._start_pending = False

    @property
    def waiting_for_answer(self) -> bool:
        """A turn was closed and no audio of its answer has arrived yet."""
        return self._first_audio_pending

    def response_created(self, response_id: str) -> None:
        self.active_response = response_id

    def accept_audio(self, response_id: str, item_id: str,
                     nbytes: int) -> tuple[bool, float | None]:
        """Record a delta; returns (play it?, answer latency if this is the turn's first)."""
        if response_id in self.dropped:
            return False, None
        self.received_bytes[item_id] = self.received_bytes.get(item_id, 0) + nbytes
        self.item_response[item_id] = response_id
        self.responses_with_audio.add(response_id)
        self.playing_item = item_id
        latency = None
        if self._first_audio_pending and self.speech_stopped_at is not None:
            latency = time.monotonic() - self.speech_stopped_at
            self._first_audio_pending = False
        return True, latency

    def speech_stopped(self) -> None:
        self.speech_stopped_at = time.monotonic()
        self._first_audio_pending = True
        self._start_pending = True

    def answer_started(self) -> float | None:
        """The speaker began an answer: latency from the end of speech, once per turn."""
        if self._start_pending and self.speech_stopped_at is not None:
            self._start_pending = False
            return time.monotonic() - self.speech_stopped_at
        return None

    def finished_playing(self, item_id: str) -> None:
        if self.playing_item == item_id:
            self.playing_item = None

    def audio_done(self, response_id: str, item_id: str) -> bool:
        """The item's audio is complete; returns False for a dropped (barged-in) response."""
        self.ended_items.add(item_id)
        return response_id not in self.dropped

    def response_done(self, response_id: str) -> tuple[bool, list[str]]:
        """(no audio at all, so no playback event will follow; items whose audio never got
        an audio done, e.g. cancelled by the server: they must be ended to play out)."""
        if self.active_response == response_id:
            self.active_response = None
        silent = response_id not in self.responses_with_audio and response_id not in self.dropped
        open_items = [] if response_id in self.dropped else [
            item for item, resp in self.item_response.items()
            if resp == response_id and item not in self.ended_items]
        self.ended_items.update(open_items)
        return silent, open_items

    def begin_barge_in(self) -> tuple[str | None, str | None, int]:
        """Stop tracking the playing answer: (item_id, response_id, ms received) of what was
        playing; the response is marked dropped. (None, active response, 0) if nothing was."""
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

    def abandon_turn(self) -> str | None:
        """The patient gave up waiting: drop whatever answer is still to come; returns the
        active response to cancel, if any."""
        self._first_audio_pending = self._start_pending = False
        response = self.active_response
        if response is not None:
            self.dropped.add(response)
        return response

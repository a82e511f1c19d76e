"""One session's state (SessionRun) and the bridge from the realtime service's events to the
controller's events and the audio ports (ServerEvents). Used by kiosk.conversation; split out
so each module does one job."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from kiosk.events import (
    AnswerFinished,
    Event,
    SpeechStarted,
    SpeechStopped,
)
from kiosk.ports import AudioPort
from kiosk.session import protocol as p
from kiosk.session.realtime import RealtimeClient, RealtimeHandler
from kiosk.session.turns import AnswerTracker, ReplayBuffer, SessionStats
from kiosk.settings import Settings

log = logging.getLogger("kiosk.conversation")
transcript_log = logging.getLogger("kiosk.transcript")


class SessionRun:
    """State of one session (one start() ... end()); callbacks from stale runs are ignored."""

    def __init__(self, session_id: str, replay_ms: int = 10_000) -> None:
        self.session_id = session_id
        self.stop = threading.Event()
        self.client: RealtimeClient | None = None
        self.tracker = AnswerTracker()
        self.stats = SessionStats(session_id=session_id)
        self.pressed_at = time.monotonic()
        self.expired = False
        self.conversation_id: str | None = None  # kept across reconnects of this session
        self.last_error: tuple[str, str] | None = None  # (code, message) of the last error event
        self.close_info: tuple[int | None, str] = (None, "")
        # Uncommitted audio, resent after a reconnect; as long as the capture ring at most.
        self.replay = ReplayBuffer(replay_ms)
        self.worker: threading.Thread | None = None


class RunOwner(Protocol):
    """What ServerEvents needs from the conversation that owns the run."""

    settings: Settings
    audio: AudioPort

    def deliver(self, run: SessionRun, event: Event) -> None: ...

    def barge_in(self, run: SessionRun, by_button: bool) -> None: ...


class ServerEvents(RealtimeHandler):
    """Server events of one run's connection -> controller events and audio actions."""

    def __init__(self, conv: RunOwner, run: SessionRun) -> None:
        self.conv = conv
        self.run = run

    def on_speech_started(self, item_id: str, audio_start_ms: int) -> None:
        self.conv.deliver(self.run, SpeechStarted())
        if self.run.tracker.playing_item is not None:
            self.conv.barge_in(self.run, by_button=False)

    def on_speech_stopped(self, item_id: str, audio_end_ms: int) -> None:
        self.run.tracker.speech_stopped()
        self.run.replay.committed(audio_end_ms)
        self.run.stats.turns += 1
        self.conv.deliver(self.run, SpeechStopped())

    def on_response_created(self, response_id: str) -> None:
        self.run.tracker.response_created(response_id)

    def on_audio_delta(self, response_id: str, item_id: str, pcm: bytes) -> None:
        play, latency = self.run.tracker.accept_audio(response_id, item_id, len(pcm))
        if not play:
            self.run.stats.dropped_deltas += 1
            return
        if latency is not None:
            self.run.stats.answer_latencies_s.append(latency)
        self.run.stats.answer_audio_ms += p.pcm_ms(len(pcm))
        self.conv.audio.playback.write(item_id, pcm)

    def on_audio_done(self, response_id: str, item_id: str) -> None:
        if self.run.tracker.audio_done(response_id, item_id):
            self.conv.audio.playback.end_item(item_id)

    def on_response_done(self, response_id: str, status: str) -> None:
        silent, open_items = self.run.tracker.response_done(response_id)
        for item_id in open_items:  # cancelled by the server mid-item: play out what came
            self.conv.audio.playback.end_item(item_id)
        if silent and not self.run.stop.is_set():
            self.conv.deliver(self.run, AnswerFinished(None))  # nothing will play: no drain

    def on_transcript(self, role: str, item_id: str, text: str) -> None:
        if self.conv.settings.logging.transcripts:
            transcript_log.info("%s: %s", "patient" if role == "user" else "assistant", text)

    def on_error(self, code: str, message: str, action: str) -> None:
        self.run.last_error = (code, message)
        if action == "ignore":
            log.debug("realtime service: %s (harmless)", code)
        elif action == "end":
            self.run.expired = True
        elif action == "auth":
            log.error("realtime service refused the session token (%s); the gateway's grant "
                      "was not accepted", code)
        elif action == "protocol":
            log.error("realtime service rejected the protocol (%s: %s)", code, message)
        else:
            log.warning("realtime service reported an error (%s: %s); session continues",
                        code, message)

    def on_closed(self, code: int | None, reason: str) -> None:
        self.run.close_info = (code, reason)

"""RealtimeConversation: one patient session, from button press to the end.

start() arms the microphone at once and connects in a worker thread (gateway grant, then the
realtime WebSocket), so words spoken while connecting wait in the capture ring and are sent, in
order, as soon as the session is configured. The worker then streams frame_ms appends, and
reconnects (fresh grant, same conversation) when the link drops. Server events arrive on the
realtime client's reader thread; playback events on the audio thread. All of them only post
events to the controller, touch the audio ports, or update the turn bookkeeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from kiosk.events import (
    AnswerFinished,
    AnswerStarted,
    Event,
    Fault,
    SessionEnded,
    SessionReady,
)
from kiosk.ports import AudioPort
from kiosk.session import protocol as p
from kiosk.session.backoff import Backoff
from kiosk.session.errors import GatewayError
from kiosk.session.gateway import GatewayClient, SessionGrant
from kiosk.session.realtime import RealtimeClient, RealtimeError
from kiosk.session.run import ServerEvents, SessionRun
from kiosk.session.turns import SessionStats, close_outcome
from kiosk.settings import Settings

log = logging.getLogger("kiosk.conversation")

BACKLOG_CHUNK_MS = 200  # backlog appends: bigger than frame_ms, to catch up fast
END_JOIN_S = 0.2  # with close(): end() stays well inside its one second

# Gateway error kinds -> the controller's fault kinds.
_FAULT_KIND = {"rate_limited": "unavailable", "malformed": "protocol"}


class _Stop(Exception):
    """The session was ended while the worker was busy."""


class RealtimeConversation:
    """kiosk.ports.Conversation over the gateway and the realtime service."""

    def __init__(self, settings: Settings, audio: AudioPort, post: Callable[[Event], None],
                 gateway: GatewayClient | None = None) -> None:
        self.settings = settings
        self.audio = audio
        self.post = post
        self.gateway = gateway or GatewayClient(settings.gateway, settings.realtime)
        self._run: SessionRun | None = None
        self._lock = threading.Lock()
        self.stats = SessionStats()  # the current (or last) session's counters
        self.sessions = 0

    # -- Conversation protocol ---------------------------------------------------------------

    def start(self, session_id: str) -> None:
        """Arm capture now, connect in the background. Never blocks."""
        with self._lock:
            old = self._run
        if old is not None and not old.stop.is_set():
            log.warning("session %s still open when %s started; ending it", old.session_id,
                        session_id)
            self.end("replaced")
        run = SessionRun(session_id, int(self.settings.audio.capture_buffer_s * 1000))
        capture = self.audio.capture
        capture.arm()  # the echo gate itself is the audio engine's (audio.echo_mode)
        self.audio.playback.set_listener(lambda kind, item: self._on_playback(run, kind, item))
        with self._lock:
            self._run = run
            self.stats = run.stats
            self.sessions += 1
        run.worker = threading.Thread(target=self._work, args=(run,), daemon=True,
                                      name=f"conversation-{session_id}")
        run.worker.start()

    def interrupt(self) -> None:
        """Button barge-in: stop the answer now; the service is told what was heard."""
        run = self._run
        if run is None or run.stop.is_set():
            return
        self.barge_in(run, by_button=True)

    def end(self, reason: str) -> None:
        """Close the session. Idempotent; returns within a second."""
        with self._lock:
            run = self._run
        if run is None or run.stop.is_set():
            return
        run.stop.set()
        run.stats.ended_by = run.stats.ended_by or reason
        self.audio.playback.set_listener(None)
        if self.audio.playback.busy:
            self.audio.playback.flush()
        self.audio.capture.disarm()
        client = run.client
        if client is not None:
            run.stats.dropped_messages += client.dropped_messages
            client.close(timeout_s=0.3)
        if run.worker is not None and run.worker is not threading.current_thread():
            run.worker.join(END_JOIN_S)
        log.info("session %s ended (%s)", run.session_id, reason)

    # -- worker: connect, stream, reconnect --------------------------------------------------

    def _work(self, run: SessionRun) -> None:
        try:
            client = self._connect_first(run)
            run.stats.press_to_ready_s = time.monotonic() - run.pressed_at
            log.info("session %s ready in %.2f s", run.session_id, run.stats.press_to_ready_s)
            self.deliver(run, SessionReady())
            while True:
                self._stream(run, client)
                if run.stop.is_set():
                    return
                outcome = self._after_close(run)
                if outcome is not None:
                    self._finish(run, outcome)
                    return
                client = self._reconnect(run)
                self.deliver(run, SessionReady())
        except _Stop:
            return
        except _Failure as failure:
            self._finish(run, Fault(failure.kind, failure.message))
        except Exception as exc:  # a bug must still end the session visibly, not hang it
            log.exception("session %s failed unexpectedly", run.session_id)
            self._finish(run, Fault("internal", f"internal error ({type(exc).__name__}); "
                                                "see the log and report it"))
        finally:
            if run.client is not None and run.stop.is_set():
                run.client.close(timeout_s=0.2)

    def _connect_first(self, run: SessionRun) -> RealtimeClient:
        last: Exception | None = None
        for _attempt in range(2):  # a second try only when the grant expired on the way
            grant = self._grant(run)
            try:
                return self._open(run, grant)
            except RealtimeError as exc:
                if exc.kind != "auth" or last is not None:
                    raise _Failure(exc.kind if exc.kind != "session_expired" else "network",
                                   exc.message) from None
                last = exc
        raise AssertionError("unreachable")

    def _grant(self, run: SessionRun) -> SessionGrant:
        for _attempt in range(2):
            try:
                # A new press is a new conversation (the next patient may be someone else);
                # gateway.conversation_id pins one if IT staff want that.
                grant = self.gateway.create_session(continue_previous=False)
            except GatewayError as exc:
                run.stats.gateway_failures += 1
                raise _Failure(_FAULT_KIND.get(exc.kind, exc.kind), exc.message) from None
            self._check_stop(run)
            run.conversation_id = grant.conversation_id
            if not grant.expired():
                return grant
            log.info("session grant expired before use; fetching a fresh one")
        raise _Failure("unavailable", "the gateway hands out session tokens that have already "
                                      "expired; check the clocks of the kiosk and the gateway")

    def _open(self, run: SessionRun, grant: SessionGrant) -> RealtimeClient:
        client = RealtimeClient(grant, self.settings.realtime, ServerEvents(self, run))
        if run.client is not None:
            run.stats.dropped_messages += run.client.dropped_messages
        run.client = client
        client.connect()
        if run.stop.is_set():
            client.close(timeout_s=0.2)
            raise _Stop
        return client

    def _check_stop(self, run: SessionRun) -> None:
        if run.stop.is_set():
            raise _Stop

    def _stream(self, run: SessionRun, client: RealtimeClient) -> None:
        """Send captured audio until the link closes or the session ends."""
        capture = self.audio.capture
        frame_s = self.settings.audio.frame_ms / 1000.0
        for pcm in run.replay.take():  # after a reconnect: the turn's words so far, again
            if not self._send(run, client, pcm):
                break
            run.stats.replayed_ms += p.pcm_ms(len(pcm))
        live = False
        while not run.stop.is_set() and not client.closed.is_set():
            frame = capture.read_frame(frame_s)
            if frame is None:
                live = True
                continue
            parts = [frame.pcm]
            if not live:
                # Catching up on the backlog from the connect: bigger appends, same order.
                limit = BACKLOG_CHUNK_MS // self.settings.audio.frame_ms
                while len(parts) < limit:
                    more = capture.read_frame(0)
                    if more is None:
                        live = True
                        break
                    parts.append(more.pcm)
            pcm = p.pcm16_bytes(parts[0] if len(parts) == 1 else np.concatenate(parts))
            if not self._send(run, client, pcm):
                break
            if not live:
                run.stats.backlog_ms += p.pcm_ms(len(pcm))
        client.closed.wait(1.0 if not run.stop.is_set() else 0)

    def _send(self, run: SessionRun, client: RealtimeClient, pcm: bytes) -> bool:
        # Kept for replay even when the send fails: no lost words across a reconnect.
        run.replay.sent(pcm)
        if not client.append_audio(pcm):
            return False
        run.stats.audio_sent_ms += p.pcm_ms(len(pcm))
        return True

    def _after_close(self, run: SessionRun) -> Event | None:
        """What a closed link means: an event that ends the session, or None to reconnect."""
        code, reason = run.close_info
        outcome = close_outcome(code, run.expired, run.last_error)
        if isinstance(outcome, SessionEnded):
            log.info("session %s %s", run.session_id, "reached the realtime service's time "
                     "limit; press again for a new session" if outcome.reason ==
                     "session_expired" else "was closed by the realtime service")
        elif outcome is None:
            log.warning("session %s: realtime link lost (%s%s); reconnecting", run.session_id,
                        f"close {code}: " if code else "", reason or "no reason given")
        return outcome

    def _reconnect(self, run: SessionRun) -> RealtimeClient:
        lost_at = time.monotonic()
        give_up_s = self.settings.realtime.reconnect_give_up_s
        g = self.settings.gateway
        backoff = Backoff(min(g.retry_initial_s, 1.0), max(g.retry_max_s, 1.0))
        playing = run.tracker.connection_lost()
        if playing is not None:
            self.audio.playback.end_item(playing)  # let what arrived play out
        last = "no attempt made"
        while True:
            self._check_stop(run)
            delay = 0.0
            try:
                grant = self.gateway.create_session(run.conversation_id)
                self._check_stop(run)
                client = self._open(run, grant)
                run.stats.reconnects += 1
                log.info("session %s reconnected (attempt %d, conversation continues)",
                         run.session_id, backoff.attempts + 1)
                return client
            except GatewayError as exc:
                run.stats.gateway_failures += 1
                last, delay = exc.message, self.gateway.retry_delay(exc)
            except RealtimeError as exc:
                last, delay = exc.message, backoff.next_delay()
            if time.monotonic() + delay - lost_at > give_up_s:
                raise _Failure("network", f"realtime link lost and not restored within "
                                          f"{give_up_s:g} s (last error: {last}); check the "
                                          "network and the gateway")
            log.info("reconnect failed (%s); next try in %.1f s", last, delay)
            if run.stop.wait(delay):
                raise _Stop

    def _finish(self, run: SessionRun, event: Event) -> None:
        """The session ended by itself: report once, release the microphone."""
        if run.stop.is_set():
            return
        if isinstance(event, Fault):
            log.error("session %s failed: %s", run.session_id, event.message)
            run.stats.ended_by = f"fault:{event.kind}"
        else:
            run.stats.ended_by = getattr(event, "reason", "ended")
        run.stop.set()
        self.audio.capture.disarm()
        if run.client is not None:
            run.stats.dropped_messages += run.client.dropped_messages
            run.client.close(timeout_s=0.2)
        self.deliver(run, event)

    def deliver(self, run: SessionRun, event: Event) -> None:
        """Post `event` to the controller unless `run` is no longer the current session."""
        if self._run is run:
            self.post(event)

    # -- audio side --------------------------------------------------------------------------

    def _on_playback(self, run: SessionRun, kind: str, item_id: str) -> None:
        """From the audio thread: must not block."""
        if run.stop.is_set():
            return
        if kind == "started":
            latency = run.tracker.answer_started()
            if latency is not None:
                run.stats.answer_start_latencies_s.append(latency)
            self.deliver(run, AnswerStarted(item_id))
        elif kind in ("drained", "flushed"):
            run.tracker.finished_playing(item_id)
            self.deliver(run, AnswerFinished(item_id))

    def barge_in(self, run: SessionRun, by_button: bool) -> None:
        """Stop the playing answer, tell the service how much was heard, drop the rest."""
        item, response, received_ms = run.tracker.begin_barge_in()
        client = run.client
        if item is not None:
            played_ms = self.audio.playback.flush()
            end_ms = max(0, min(played_ms, received_ms))
            run.stats.barge_ins += 1
            log.info("barge-in by %s: answer stopped after %d ms",
                     "button" if by_button else "voice", end_ms)
            if client is not None:
                client.truncate(item, end_ms)
        # With interrupt_response on, the service cancels on the patient's speech; on a button
        # press it finishes generating and its late deltas are dropped (tracker), so the
        # kiosk sends response.cancel only when interrupt_response is off (the protocol rule).
        if response is not None and client is not None and (
                not self.settings.realtime.interrupt_response):
            with run.tracker.lock:
                active = run.tracker.active_response == response
            if active:
                client.cancel_response(response)


class _Failure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

"""One visit's conversation with the speech service: grant, link, uplink, the answer ledger
and barge-in, all owned by the conversation's loop (`kiosk.conversation`).

Everything that happens to a visit arrives as a message on the conversation's one bounded
queue and is handled here, one message at a time, by `Visit.handle`: the controller's commands,
the server's events, the speaker's notes, and the results of the visit's own I/O tasks
(fetching a grant and opening a link, reading the link). Tasks only wait and report; only
`handle` changes the visit's state. The visit tells the controller what happened by posting
events; it never calls back into the conversation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import numpy as np

from kiosk import events as ev
from kiosk.ports import AudioPort
from kiosk.session import protocol as p
from kiosk.session.blocking import run_blocking
from kiosk.session.errors import GatewayError
from kiosk.session.gateway import GatewayClient
from kiosk.session.ledger import VisitStats
from kiosk.session.link import Link, LinkClosed, LinkError
from kiosk.session.replay import ReplayBuffer
from kiosk.session.retry import Attempts
from kiosk.settings import Settings
from kiosk.turns import Turns
from kiosk.visit_messages import (
    Command,
    ConnectFailed,
    LinkDown,
    LinkUp,
    Message,
    PlaybackNote,
    ServerEvent,
)

log = logging.getLogger("kiosk.visit")
transcript_log = logging.getLogger("kiosk.transcript")

BACKLOG_CHUNK_MS = 200  # backlog appends: bigger than frame_ms, to catch up fast
# Gateway and link error kinds -> the controller's fault kinds.
_FAULT_KIND = {"rate_limited": "unavailable", "malformed": "protocol"}


class Counters(Protocol):
    """Where a visit counts what the metrics export."""

    def count_reconnect(self) -> None: ...


def close_outcome(code: int | None, expired: bool,
                  last_error: tuple[str, str] | None) -> ev.Event | None:
    """What the end of a link means for the visit: VisitEnded (the service's time cap, or a
    normal close by the service), a protocol Fault (close 4000), or None: the link was lost and
    the visit reconnects (this includes close 3000, a token that expired mid-visit: a fresh
    grant fixes it, and 1009, a message over realtime.max_message_kib)."""
    if expired or code == p.CLOSE_SESSION_EXPIRED:
        return ev.VisitEnded("session_expired")
    if code == p.CLOSE_BAD_REQUEST:
        return ev.Fault(*p.rejection_advice(code, last_error))
    if code == p.CLOSE_NORMAL:
        return ev.VisitEnded("closed by the service")
    return None


class Visit:
    """One press to the end of that conversation. Created and driven by the conversation."""

    def __init__(self, visit_id: str, settings: Settings, audio: AudioPort,
                 gateway: GatewayClient, ctx: ssl.SSLContext | None,
                 queue: asyncio.Queue[Message], frames_ready: asyncio.Event,
                 post: Callable[[ev.Event], Any], counters: Counters | None = None,
                 request_nurse: Callable[[str], bool] | None = None) -> None:
        self.visit_id = visit_id
        self.settings = settings
        self.audio = audio
        self.gateway = gateway
        self._ctx = ctx
        self._queue = queue
        self._frames_ready = frames_ready
        self._post = post
        self._counters = counters
        self.stats = VisitStats(visit_id=visit_id)
        self.pressed_at = time.monotonic()
        self.link: Link | None = None
        self.replay = ReplayBuffer(int(settings.audio.capture_buffer_s * 1000))
        self.turns = Turns(settings, audio.playback, self.replay, self.stats, post,
                           request_nurse)
        self.ended = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connecting: asyncio.Task[None] | None = None
        self._uplink: asyncio.Task[None] | None = None
        self.closing: asyncio.Task[None] | None = None  # the last link's polite close
        self.conversation_id: str | None = None

    # -- life --------------------------------------------------------------------------------

    def begin(self) -> None:
        """Arm the microphone now (the patient may talk right after the chime) and connect."""
        self.audio.capture.arm()
        self._connecting = self._spawn(self._connect(reconnect=False))

    def begin_failed(self, fault: ev.Fault) -> None:
        """The visit cannot even start (a broken setting): report it as its failure."""
        self._finish(fault)

    def end(self, reason: str) -> None:
        """Stop everything this visit started. Idempotent; never waits."""
        if self.ended:
            return
        self.ended = True
        self.stats.ended_by = self.stats.ended_by or reason
        for task in list(self._tasks):
            task.cancel()
        playback = self.audio.playback
        if playback.busy:
            playback.flush()
        self.audio.capture.disarm()
        link, self.link = self.link, None
        if link is not None:
            self.stats.dropped_messages += link.dropped_messages
            # A polite close in the background, bounded; the conversation waits for it only
            # at shut-down.
            self.closing = asyncio.get_running_loop().create_task(link.close())
        log.info("visit %s ended (%s)", self.visit_id, reason)

    def _finish(self, event: ev.Event) -> None:
        """The visit ended by itself: report once."""
        if self.ended:
            return
        if isinstance(event, ev.Fault):
            log.error("visit %s failed: %s", self.visit_id, event.message,
                      extra={"error_kind": event.kind})
            self.end(f"fault:{event.kind}")
        else:
            self.end(getattr(event, "reason", "ended"))
        self._post(event)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self.ended:
            exc = task.exception()
            log.error("visit %s: a background task failed", self.visit_id, exc_info=exc)
            self._finish(ev.Fault("internal", f"internal error ({type(exc).__name__}); "
                                              "see the log and report it"))

    # -- the one handler ---------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Apply one message (on the conversation's loop; never waits)."""
        if self.ended:
            return
        match msg:
            case LinkUp(link=link):
                self._on_link_up(link)
            case ConnectFailed(fault=fault):
                self._finish(fault)
            case ServerEvent(link=link, event=event) if link is self.link:
                self.turns.on_server_event(event, self._link_sender(link))
            case LinkDown(link=link, code=code, reason=reason) if link is self.link:
                self._on_link_down(code, reason)
            case PlaybackNote(kind=kind, item_id=item) if item in self.turns.items:
                self.turns.on_playback(kind, item)
            case Command(name="interrupt"):
                self.turns.barge_in(by_button=True, send=self._link_sender(self.link))
            case Command(name="abandon"):
                self.turns.abandon(send=self._link_sender(self.link))
            case _:
                pass  # a stale link's events, another visit's speaker notes

    # -- connecting --------------------------------------------------------------------------

    async def _connect(self, reconnect: bool) -> None:
        """Grant, then link, retrying transient failures; reports LinkUp or ConnectFailed."""
        g = self.settings.gateway
        give_up_s = self.settings.realtime.reconnect_give_up_s if reconnect else g.give_up_s
        attempts = Attempts(g.retry_initial_s, g.retry_max_s, give_up_s)
        fresh_token_tried = False
        while True:
            error: GatewayError | LinkError
            try:
                link = await self._open_link(reconnect)
                await self._queue.put(LinkUp(self, link))
                return
            except GatewayError as exc:
                self.stats.gateway_failures += 1
                error = exc
            except LinkError as exc:
                if exc.kind == "auth" and not fresh_token_tried:
                    # The token died on the way (clock skew, a shared token at its end): one
                    # fresh grant at once before calling it a failure.
                    fresh_token_tried = True
                    continue
                error = exc
            delay = attempts.next_delay(error)
            if delay is None:
                await self._queue.put(ConnectFailed(self, self._fault(error, attempts,
                                                                      reconnect)))
                return
            log.info("visit %s: %s; trying again in %.1f s (attempt %d, giving up after %g s)",
                     self.visit_id, error.message, delay, attempts.count + 1, give_up_s)
            await asyncio.sleep(delay)

    async def _open_link(self, reconnect: bool) -> Link:
        for _ in range(2):  # a second grant only when the first expired on the way
            create = functools.partial(
                self.gateway.create_grant, self.conversation_id if reconnect else None,
                continue_previous=reconnect, automatic=reconnect)
            grant = await run_blocking(create)
            self.conversation_id = self.conversation_id or grant.conversation_id
            if not grant.expired():
                link = Link(grant, self.settings.realtime, self.settings.gateway, self._ctx,
                            self.settings.language)
                await link.open()
                return link
            log.info("visit %s: grant expired before use; fetching a fresh one", self.visit_id)
        raise GatewayError("unavailable", "the gateway hands out session tokens that have "
                                          "already expired; check the clocks of the kiosk and "
                                          "the gateway")

    def _fault(self, error: GatewayError | LinkError, attempts: Attempts,
               reconnect: bool) -> ev.Fault:
        kind = _FAULT_KIND.get(error.kind, error.kind)
        message = error.message
        if attempts.count > 1:
            what = "link lost and not restored" if reconnect else "gave up"
            message += f" ({what} after {attempts.count} attempts in {attempts.elapsed_s:.0f} s)"
        return ev.Fault(kind, message)

    def _on_link_up(self, link: Link) -> None:
        first = self.stats.press_to_ready_s is None
        self.link = link
        self.turns.new_link()
        if first:
            self.stats.press_to_ready_s = time.monotonic() - self.pressed_at
            log.info("visit %s ready in %.2f s", self.visit_id, self.stats.press_to_ready_s)
        else:
            self.stats.reconnects += 1
            if self._counters is not None:
                self._counters.count_reconnect()
            log.info("visit %s reconnected (conversation continues)", self.visit_id)
        self._spawn(self._read(link))
        asked_again = bool(self.replay.pending_turn) and not first
        if asked_again:
            self._ask_again(link)
        self._uplink = self._spawn(self._stream(link))
        self._post(ev.VisitReady(turn_pending=asked_again))

    def _ask_again(self, link: Link) -> None:
        """The link died after the patient's question and before its answer: the new link's
        service never heard it, so send the question again as a user message and ask for a
        response (the conversation id keeps the context)."""
        pcm = b"".join(self.replay.pending_turn)
        self.stats.turns_asked_again += 1
        self.turns.ledger.speech_stopped()  # the answer's latency is measured from here
        log.info("visit %s: asking the last question again (%d ms) on the new link",
                 self.visit_id, p.pcm_ms(len(pcm)))
        self._send_soon(link, p.user_audio_item(pcm))
        self._send_soon(link, p.response_create())

    # -- link traffic ------------------------------------------------------------------------

    async def _read(self, link: Link) -> None:
        try:
            while True:
                event = await link.recv()
                await self._queue.put(ServerEvent(self, link, event))
        except LinkClosed as closed:
            await self._queue.put(LinkDown(self, link, closed.code, closed.reason))

    async def _stream(self, link: Link) -> None:
        """The uplink: what the service missed on the last link, then the backlog from the
        connect in bigger pieces, then the microphone live, frame by frame."""
        for pcm in self.replay.take():
            if not await self._send_audio(link, pcm):
                return
            self.stats.replayed_ms += p.pcm_ms(len(pcm))
        capture = self.audio.capture
        limit = max(1, BACKLOG_CHUNK_MS // self.settings.audio.frame_ms)
        live = False
        while True:
            frame = capture.read_frame(0)
            if frame is None:
                live = True
                self._frames_ready.clear()
                frame = capture.read_frame(0)  # audio kept between the read and the clear
                if frame is None:
                    await self._frames_ready.wait()
                    continue
            parts = [frame.pcm]
            while not live and len(parts) < limit:
                more = capture.read_frame(0)
                if more is None:
                    live = True
                    break
                parts.append(more.pcm)
            pcm = p.pcm16_bytes(parts[0] if len(parts) == 1 else np.concatenate(parts))
            if not await self._send_audio(link, pcm):
                return  # the reader reports the link's end
            if not live:
                self.stats.backlog_ms += p.pcm_ms(len(pcm))

    async def _send_audio(self, link: Link, pcm: bytes) -> bool:
        self.replay.sent(pcm)  # kept even when the send fails: no lost words on a reconnect
        if not await link.append_audio(pcm):
            return False
        self.stats.audio_sent_ms += p.pcm_ms(len(pcm))
        return True

    def _send_soon(self, link: Link, event: dict[str, Any]) -> None:
        """Send a control event without waiting for it (a stalled link must not stall the
        visit); ordering between control events is kept by the link's socket buffer."""
        self._spawn(self._send(link, event))

    def _link_sender(self, link: Link | None) -> Callable[[dict[str, Any]], None]:
        """How the turns send a control event on `link` (nothing while there is none)."""
        if link is None:
            return lambda event: None
        return functools.partial(self._send_soon, link)

    @staticmethod
    async def _send(link: Link, event: dict[str, Any]) -> None:
        await link.send(event)

    def _on_link_down(self, code: int | None, reason: str) -> None:
        link = self.link
        if link is not None:
            self.stats.dropped_messages += link.dropped_messages
            link.abort()
        self.link = None
        if self._uplink is not None:
            self._uplink.cancel()
        outcome = close_outcome(code, self.turns.expired, self.turns.last_error)
        if outcome is not None:
            if isinstance(outcome, ev.VisitEnded):
                log.info("visit %s %s", self.visit_id, "reached the realtime service's time "
                         "limit; press again for a new visit" if outcome.reason ==
                         "session_expired" else "was closed by the realtime service")
            self._finish(outcome)
            return
        said = f"close {code}: " if code else ""
        log.warning("visit %s: realtime link lost (%s%s); reconnecting", self.visit_id, said,
                    reason or "no reason given")
        self.turns.link_lost()
        self._post(ev.LinkLost(reason or "connection lost"))
        self._connecting = self._spawn(self._connect(reconnect=True))


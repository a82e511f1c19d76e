"""The one owner of the conversation: a thread running an asyncio loop, and its one queue.

The controller's commands (start, interrupt, end, abandon), the speaker's notes and the
microphone's "audio kept" signal come from other threads; each only *posts* (through
`loop.call_soon_threadsafe`, which never blocks) and returns. The server's events come from the
visit's own tasks on this loop. Everything passes through one bounded queue and is applied
here, in order, by one coroutine: the link, the uplink, the answer ledger and barge-in have no
other owner and no locks. Events for the controller go out through `post` (its bounded queue).

    controller ──post──▶ queue ◀── speaker notes (audio thread)
                           ▲
      link reader task ────┘      ──▶ Visit.handle ──▶ playback / link sends / post(event)

Example::

    conv = Conversation(settings, audio_engine, controller.post, counters=metrics)
    conv.start("a1b2c3d4"); ...; conv.end("ended by button")
    conv.close()            # at shut-down
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kiosk import events as ev
from kiosk.ports import AudioPort
from kiosk.session.errors import GatewayError
from kiosk.session.gateway import GatewayClient
from kiosk.session.ledger import VisitStats
from kiosk.session.transport import insecure_warnings, tls_context
from kiosk.settings import Settings
from kiosk.visit import Counters, Visit
from kiosk.visit_messages import Command, Message, PlaybackNote, StartTestCall

if TYPE_CHECKING:
    from kiosk.test_call.call import TestCall

log = logging.getLogger("kiosk.conversation")

QUEUE_SIZE = 1024  # messages; the answer's audio deltas are the bulk, handled in microseconds
STOP_S = 2.0


class Conversation:
    """kiosk.ports.Conversation over the gateway and the realtime service."""

    def __init__(self, settings: Settings, audio: AudioPort, post: Callable[[ev.Event], Any],
                 gateway: GatewayClient | None = None, counters: Counters | None = None,
                 request_nurse: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self.audio = audio
        self._post = post
        self._counters = counters
        # The model's request_nurse tool (realtime.nurse_call_tool): NurseCall.request, which
        # only queues and returns.
        self._request_nurse = request_nurse
        self._ctx: ssl.SSLContext | None = None
        self._config_problem: str | None = None
        try:
            self._ctx = tls_context(settings.gateway)
        except GatewayError as exc:  # a broken ca_file: every visit reports it
            self._config_problem = exc.message
        self.gateway = gateway or GatewayClient(settings.gateway, settings.realtime,
                                                ctx=self._ctx, language=settings.language)
        for warning in insecure_warnings(settings.gateway, settings.realtime.url):
            log.warning("%s", warning)
        self._loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self._frames_ready = asyncio.Event()
        self._dropped = 0
        self._closings: set[asyncio.Task[None]] = set()
        self.visit: Visit | None = None
        self.running_test: TestCall | None = None  # when self.visit is a remote test call's
        self.stats = VisitStats()  # the current (or last) visit's counters
        self.visits = 0
        self._thread = threading.Thread(target=self._run, name="conversation", daemon=True)
        self._thread.start()
        audio.capture.set_listener(self._on_audio_kept)
        audio.playback.set_listener(self._on_playback)

    # -- kiosk.ports.Conversation (any thread; never waits) ----------------------------------

    def start(self, visit_id: str) -> None:
        self._deliver(Command("start", visit_id))

    def interrupt(self) -> None:
        self._deliver(Command("interrupt"))

    def end(self, reason: str) -> None:
        self._deliver(Command("end", reason))

    def abandon_turn(self) -> None:
        self._deliver(Command("abandon"))

    def test_call(self, call: TestCall) -> None:
        self._deliver(StartTestCall(call))

    def alive(self, timeout_s: float = 2.0) -> bool:
        """The loop turns: it runs a callback posted now within `timeout_s` (for the systemd
        watchdog; the loop sleeps between messages, so it is asked, not polled)."""
        if not self._thread.is_alive():
            return False
        answered = threading.Event()
        try:
            self._loop.call_soon_threadsafe(answered.set)
        except RuntimeError:
            return False
        return answered.wait(timeout_s)

    def close(self) -> None:
        """End any visit and stop the loop (shut-down); returns within about two seconds."""
        self.audio.capture.set_listener(None)
        self.audio.playback.set_listener(None)
        self._deliver(Command("stop"))
        self._thread.join(STOP_S + 0.5)

    # -- posting from other threads ----------------------------------------------------------

    def _deliver(self, msg: Message) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the kiosk is stopping
            self._loop.call_soon_threadsafe(self._put, msg)

    def _put(self, msg: Message) -> None:
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.error("conversation queue full: dropped %s (%d so far)",
                          type(msg).__name__, self._dropped)

    def _on_playback(self, kind: str, item_id: str) -> None:
        """From the audio thread: a note about an answer item."""
        self._deliver(PlaybackNote(kind, item_id))

    def _on_audio_kept(self) -> None:
        """From the audio thread: the microphone kept audio; wake the uplink."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._frames_ready.set)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                if isinstance(msg, Command) and msg.name == "stop":
                    await self._stop()
                    return
                self._apply(msg)
            except Exception as exc:  # a bug ends the visit visibly; the owner lives on
                log.exception("conversation: internal error handling %s", type(msg).__name__)
                self._end_visit("internal error")
                self._post(ev.Fault("internal", f"internal error ({type(exc).__name__}); see "
                                                "the log and report it"))

    def _apply(self, msg: Message) -> None:
        if isinstance(msg, Command) and msg.name == "start":
            self._start_visit(msg.arg)
        elif isinstance(msg, Command) and msg.name == "end":
            self._end_visit(msg.arg)
        elif isinstance(msg, StartTestCall):
            self._start_test_call(msg.call)
        elif self.visit is not None and getattr(msg, "visit", self.visit) is self.visit:
            self.visit.handle(msg)
            if self.visit.ended:
                self._end_visit("ended")

    def _start_visit(self, visit_id: str) -> None:
        if self.running_test is not None:  # the patient comes first, at once
            self._end_visit("a patient pressed the button")
        if self.visit is not None:
            log.warning("visit %s still open when %s started; ending it",
                        self.visit.visit_id, visit_id)
            self._end_visit("replaced")
        visit = Visit(visit_id, self.settings, self.audio, self.gateway, self._ctx,
                      self._queue, self._frames_ready, self._post, self._counters,
                      self._request_nurse)
        self.visit, self.stats = visit, visit.stats
        self.visits += 1
        if self._config_problem is not None:
            visit.begin_failed(ev.Fault("config", self._config_problem))
            self.visit = None
            return
        visit.begin()

    def _end_visit(self, reason: str) -> None:
        visit, self.visit = self.visit, None
        call, self.running_test = self.running_test, None
        if visit is None:
            return
        visit.end(reason)
        if visit.closing is not None:
            self._closings.add(visit.closing)
            visit.closing.add_done_callback(self._closings.discard)
        if call is not None:
            call.ended(reason)

    def _start_test_call(self, call: TestCall) -> None:
        """A visit without a patient: the question instead of the microphone, its events to
        the test call instead of the controller (which stays idle), not counted as a visit."""
        if self.running_test is not None:
            log.info("test call %s is running: its result also answers request %s",
                     self.running_test.call_id, call.call_id)
            return
        if self.visit is not None:
            call.refuse(f"visit {self.visit.visit_id} is still closing; try again")
            return
        if self._config_problem is not None:
            call.fail(f"config: {self._config_problem}")
            return
        settings, audio, gateway = call.visit_parts(self.settings, self.audio, self.gateway,
                                                    self._frames_ready.set)
        visit = Visit(call.call_id, settings, audio, gateway, self._ctx, self._queue,
                      self._frames_ready, call.on_event)
        self.visit, self.running_test = visit, call
        call.begin(visit.stats, functools.partial(self._end_test_call, call))
        visit.begin()

    def _end_test_call(self, call: TestCall, reason: str) -> None:
        if self.running_test is call:
            self._end_visit(reason)

    async def _stop(self) -> None:
        """End the visit, let the link close politely (bounded), cancel what is left."""
        self._end_visit("kiosk stopping")
        if self._closings:
            await asyncio.wait(set(self._closings), timeout=STOP_S)
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.wait(rest, timeout=0.5)

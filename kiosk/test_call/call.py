"""One remote test call: a visit without a patient, and what its events mean.

Who touches a `TestCall`, in order (each hands it on; none shares it with another at once):

1. the daemon's main thread builds it on SIGUSR2 and calls `request()`, whose own thread
   makes the question (`question.py`) and posts `TestCallRequested` to the controller;
2. the controller, which runs it only while idle: otherwise `refuse()` or `fail()`;
3. the conversation's loop, which builds the visit from `visit_parts()`, calls `begin()`,
   routes the visit's events to `on_event()` instead of the controller, and calls `ended()`
   when the visit ends for any reason (a press, which starts the patient's visit at once,
   the kiosk stopping or reloading).

The result goes to the reporter (journal, result file, metrics: `report.py`) and, as
`TestCallEnded`, to the controller for the idle status (STATUS=).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from kiosk import events as ev
from kiosk.ports import SAMPLE_RATE_HZ, AudioPort
from kiosk.session.gateway import GatewayClient
from kiosk.settings import Settings
from kiosk.test_call.question import test_question
from kiosk.test_call.stand_ins import QuestionCapture, QuietPlayback, TestAudio, TimedGateway

if TYPE_CHECKING:
    from kiosk.session.ledger import VisitStats

log = logging.getLogger("kiosk.test_call")

RESULTS = ("ok", "failed", "refused", "abandoned")
STEPS = ("grant", "link", "first_answer_audio", "total")
"""The timings of a test call, in seconds from its start (the request reaching the
conversation): the grant received, the link open and configured, the answer's first sample
handed to the speaker, the answer played out (or the end, for a call that failed)."""


@dataclass(frozen=True)
class TestCallResult:
    """What one test call came to."""

    __test__ = False  # not a pytest test class, despite its name

    call_id: str
    result: str  # one of RESULTS
    reason: str  # why it failed, was refused or abandoned; "" when ok
    requested_at: float  # unix time of the request
    finished_at: float  # unix time of the result
    timings_s: dict[str, float] = field(default_factory=dict)  # the STEPS it reached
    answer_latency_s: float | None = None  # end of the question to the first answer audio
    answer_ms: int = 0  # answer audio received
    voice: str = ""  # what spoke the question

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    def summary(self) -> str:
        """One line for the journal and STATUS=, timings first (the figures IT compares)."""
        t = self.timings_s
        text = f"test call {self.call_id} {self.result}"
        if self.ok:
            text += f" in {t['total']:.2f} s: " + ", ".join(
                f"{step.replace('_', ' ')} {t[step]:.2f} s" for step in STEPS[:-1] if step in t)
            if self.answer_latency_s is not None:
                text += f" ({self.answer_latency_s:.2f} s after the question)"
            return text
        if "total" in t:
            text += f" after {t['total']:.1f} s"
        return f"{text}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.call_id, "result": self.result, "reason": self.reason,
                "requested_at": self.requested_at, "finished_at": self.finished_at,
                "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
                "answer_latency_s": (None if self.answer_latency_s is None
                                     else round(self.answer_latency_s, 3)),
                "answer_ms": self.answer_ms, "voice": self.voice, "summary": self.summary()}


class Reporter(Protocol):
    def started(self, call: TestCall) -> None:
        """The test call began (on the conversation's loop; must not wait)."""

    def finished(self, result: TestCallResult) -> None:
        """The test call has its result (any thread; must not wait)."""


class TestCall:
    """One remote test call (see the module's docstring for who calls what)."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, settings: Settings, reporter: Reporter,
                 post: Callable[[ev.Event], Any]) -> None:
        self.call_id = f"test-{uuid.uuid4().hex[:6]}"
        self.settings = settings
        self._reporter = reporter
        self._post = post  # the controller's queue
        self.requested_at = time.time()
        self.question = np.zeros(0, np.int16)
        self.voice = ""
        self.result: TestCallResult | None = None
        self._started_at: float | None = None  # monotonic
        self._marks: dict[str, float] = {}  # step -> monotonic time it was reached
        self._stats: VisitStats | None = None
        self._end: Callable[[str], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._links_lost = 0

    # -- 1. the daemon's main thread ---------------------------------------------------------

    def request(self) -> None:
        """Make the question on a thread of its own, then ask the controller to run the call:
        the main thread goes back to its signals at once."""
        threading.Thread(target=self._prepare, name="test-call", daemon=True).start()

    def _prepare(self) -> None:
        try:
            self.question, self.voice = test_question()
        except Exception as exc:  # the result must come, whatever broke
            log.exception("test call %s: cannot make the question", self.call_id)
            self.fail(f"internal error making the question ({type(exc).__name__}); see the log")
            return
        if not self._post(ev.TestCallRequested(self)):
            self.refuse("the kiosk's event queue is full; try again")

    # -- 2. the controller -------------------------------------------------------------------

    def refuse(self, reason: str) -> None:
        """Not now (a patient uses the kiosk): nothing was tried."""
        self._finish("refused", reason)

    def fail(self, reason: str) -> None:
        """Failed without trying (a fault that blocks visits, a broken setting)."""
        self._finish("failed", reason)

    # -- 3. the conversation's loop ----------------------------------------------------------

    def visit_parts(self, settings: Settings, audio: AudioPort, gateway: GatewayClient,
                    wake: Callable[[], None]) -> tuple[Settings, AudioPort, GatewayClient]:
        """The settings, audio and gateway its visit uses instead of the patient's: the
        question for the microphone, the answer at test_call.volume, transcripts never
        logged, retries bounded by half of test_call.timeout_s (so a failure comes with the
        visit's own reason before the test call's timeout)."""
        self._loop = asyncio.get_running_loop()
        t = settings.test_call
        bound = t.timeout_s / 2
        visit_settings = replace(
            settings,
            logging=replace(settings.logging, transcripts=False),
            gateway=replace(settings.gateway, give_up_s=min(settings.gateway.give_up_s, bound)),
            realtime=replace(settings.realtime, reconnect_give_up_s=min(
                settings.realtime.reconnect_give_up_s, bound)))
        capture = QuestionCapture(self.question, settings.audio.frame_ms, wake)
        playback = QuietPlayback(audio.playback, t.volume, settings.audio.volume)
        timed = TimedGateway(gateway, self._grant_received)
        # A visit only calls create_grant() on its gateway, which TimedGateway passes on.
        return visit_settings, TestAudio(capture, playback, audio.alive), cast(GatewayClient,
                                                                               timed)

    def begin(self, stats: VisitStats, end: Callable[[str], None]) -> None:
        """Its visit has begun; `end(reason)` ends that visit (called soon, never inside an
        event of the visit)."""
        self._started_at = time.monotonic()
        self._stats, self._end = stats, end
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.settings.test_call.timeout_s, self._timed_out)
        log.info("test call %s: asking a test question (%s, %.1f s) through the gateway",
                 self.call_id, self.voice, len(self.question) / SAMPLE_RATE_HZ)
        self._reporter.started(self)

    def on_event(self, event: ev.Event) -> None:
        """The visit's events, which would go to the controller in a patient's visit."""
        if self.result is not None:
            return
        now = time.monotonic()
        match event:
            case ev.VisitReady():
                self._marks.setdefault("link", now)
            case ev.SpeechStopped():
                self._marks.setdefault("question_heard", now)
            case ev.AnswerStarted():
                self._marks.setdefault("first_answer_audio", now)
            case ev.AnswerFinished():
                if self._stats is not None and self._stats.answer_audio_ms > 0 \
                        and "first_answer_audio" in self._marks:
                    self._finish("ok", "")
                else:
                    self._finish("failed", "the speech service answered without audio")
            case ev.LinkLost(reason=reason):
                self._links_lost += 1
                log.warning("test call %s: link lost (%s); reconnecting", self.call_id, reason)
            case ev.Fault(kind=kind, message=message):
                self._finish("failed", f"{kind}: {message}")
            case ev.VisitEnded(reason=reason):
                self._finish("failed", f"the speech service closed the link before answering "
                                       f"({reason})")
            case _:
                pass

    def ended(self, reason: str) -> None:
        """Its visit ended; without a result yet, the test call was abandoned for `reason`."""
        self._finish("abandoned", reason)

    # -- results -----------------------------------------------------------------------------

    def _grant_received(self, at: float) -> None:
        """From the gateway request's thread: hand the time to the loop."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the kiosk stopped
                loop.call_soon_threadsafe(self._marks.setdefault, "grant", at)

    def _timed_out(self) -> None:
        self._timer = None
        timeout = self.settings.test_call.timeout_s
        marks = self._marks
        if "link" not in marks:
            where = ("the gateway gave a grant but the link to the speech service did not open"
                     if "grant" in marks else "no grant from the gateway")
        elif "question_heard" not in marks:
            where = ("the speech service did not hear the question (no end of speech "
                     "detected)")
        elif "first_answer_audio" not in marks:
            where = "the speech service heard the question but sent no answer"
        else:
            where = "the answer did not finish playing"
        lost = f"; the link was lost {self._links_lost} time(s)" if self._links_lost else ""
        self._finish("failed", f"{where} within test_call.timeout_s ({timeout:g} s){lost}")

    def _finish(self, result: str, reason: str) -> None:
        """The one place a result is made: once."""
        if self.result is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timings: dict[str, float] = {}
        if self._started_at is not None:
            now = time.monotonic()
            for step in STEPS[:-1]:
                if step in self._marks:
                    timings[step] = max(0.0, self._marks[step] - self._started_at)
            timings["total"] = now - self._started_at
        stats = self._stats
        latency = (stats.answer_start_latencies_s[0]
                   if stats is not None and stats.answer_start_latencies_s else None)
        self.result = TestCallResult(
            self.call_id, result, reason, self.requested_at, time.time(), timings,
            latency if result == "ok" else None,
            stats.answer_audio_ms if stats is not None else 0, self.voice)
        self._reporter.finished(self.result)
        self._post(ev.TestCallEnded(self.result.summary()))
        if self._end is not None and self._loop is not None:
            self._loop.call_soon(self._end, f"test call {result}")

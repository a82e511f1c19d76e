"""The kiosk's one state machine.

Every input (button, conversation, audio, timers, signals) arrives as an `Event` on one
bounded queue and is applied by one thread, the only code that changes the state. Each change
is published to observers (LED, cues, systemd status, logs, metrics, the demo display), so none
of them is special-cased here. The conversation is told what to do through its port, whose
methods only post to the conversation's own queue: nothing here waits on another thread.

    idle -> connecting -> listening -> thinking -> speaking -> listening ... -> idle
    listening/thinking/speaking -> connecting (link lost, reconnecting) -> listening/thinking
    thinking -> listening (no answer within visit.thinking_timeout_s: "please ask again")
    any state -> error (shown for visit.error_display_s, then idle; or held while a
    persistent fault such as an unplugged microphone lasts)

A remote test call (kiosk/test_call) runs only from idle and leaves the state idle: the light
and sounds stay as they are, only the idle status names it. A press during it starts the
patient's visit at once (the conversation drops the test call for it).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from kiosk import events as ev
from kiosk.ports import Conversation
from kiosk.settings import VisitSettings
from kiosk.states import State, StateChange

log = logging.getLogger("kiosk.controller")

IN_VISIT = (State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING)


class Observer(Protocol):
    def on_state_change(self, change: StateChange) -> None: ...


class Controller:
    """Owns the state. `post()` from any thread; `run()` (or `step()` in tests) applies events.

    >>> c = Controller(VisitSettings(), conversation)
    >>> c.add_observer(led); c.start(); c.post(ev.ButtonPressed())
    """

    def __init__(self, settings: VisitSettings, conversation: Conversation,
                 clock: Callable[[], float] = time.monotonic, queue_size: int = 256) -> None:
        self.settings = settings
        self.conversation = conversation
        self.clock = clock
        self._queue: queue.Queue[ev.Event] = queue.Queue(maxsize=queue_size)
        self._observers: list[Observer] = []
        self._state = State.IDLE
        self._visit_id: str | None = None
        self._visit_deadline: float | None = None  # visit.max_visit_s
        self._idle_deadline: float | None = None  # visit.idle_timeout_s without speech
        self._thinking_deadline: float | None = None  # visit.thinking_timeout_s
        self._error_deadline: float | None = None  # end of the error display
        self._persistent: dict[str, ev.Fault] = {}  # fault kind -> the fault, while it lasts
        self._thread: threading.Thread | None = None
        self._running = False
        self.last_change: StateChange | None = None  # read by other threads (one reference)
        self.dropped_events = 0

    # -- wiring ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def visit_id(self) -> str | None:
        return self._visit_id

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    def post(self, event: ev.Event) -> bool:
        """Queue an event; never blocks (callers are audio callbacks and GPIO threads)."""
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            self.dropped_events += 1
            log.warning("controller queue full: dropped %s", type(event).__name__)
            return False

    def start(self) -> threading.Thread:
        self._running = True
        self._thread = threading.Thread(target=self.run, name="controller", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout_s: float = 2.0) -> None:
        """End any visit and stop the loop (from another thread)."""
        if self._thread is None:
            return
        self._running = False
        with contextlib.suppress(queue.Full):  # the loop also checks _running when it wakes
            self._queue.put(ev.Stop(), timeout=timeout_s)
        self._thread.join(timeout_s)
        self._thread = None

    def alive(self, max_age_s: float = 2.0) -> bool:
        """True when the loop answers a heartbeat within `max_age_s` (asked of it through its
        queue, like any event: a loop stuck in an observer does not answer)."""
        if not self._running or self._thread is None or not self._thread.is_alive():
            return False
        answered = threading.Event()
        return self.post(ev.Heartbeat(answered)) and answered.wait(max_age_s)

    def run(self) -> None:
        self._running = True
        while self._running:
            self.step(timeout_s=self._wait_s())

    def step(self, timeout_s: float | None = 0.0) -> bool:
        """Apply one queued event (or only the timers when none comes within `timeout_s`; None
        waits for an event). Returns False once a Stop event has been applied."""
        event: ev.Event
        try:
            event = (self._queue.get(timeout=timeout_s) if timeout_s is None or timeout_s > 0
                     else self._queue.get_nowait())
        except queue.Empty:
            event = ev.Tick()
        try:
            self._apply(event)
        except Exception:  # one bad event must not kill the only thread that owns the state
            log.exception("internal error applying %s", type(event).__name__)
            self._fault(ev.Fault("internal", "internal error; see the log"))
        self._check_timers()
        return not isinstance(event, ev.Stop)

    def _wait_s(self) -> float | None:
        """Until the next timer is due; None (sleep until an event) when none is set."""
        deadlines = [d for d in (self._visit_deadline, self._idle_deadline,
                                 self._thinking_deadline, self._error_deadline)
                     if d is not None]
        if not deadlines:
            return None
        return max(0.001, min(deadlines) - self.clock())

    # -- transitions ----------------------------------------------------------------------

    def _apply(self, event: ev.Event) -> None:
        s = self._state
        match event:
            case ev.Stop():
                self._running = False
                if s in IN_VISIT:
                    self._end_visit("kiosk stopping")
            case ev.ButtonPressed(long=True):
                if s in IN_VISIT:
                    self._end_visit("ended by long press")
            case ev.ButtonPressed():
                self._press(event)
            case ev.VisitReady(turn_pending=True) if s is State.CONNECTING:
                self._set(State.THINKING, "reconnected: waiting for the answer again")
            case ev.VisitReady() if s is State.CONNECTING:
                self._set(State.LISTENING, "connected: speak now")
                self._arm_idle_timer()
            case ev.LinkLost() if s in (State.LISTENING, State.THINKING, State.SPEAKING):
                self._idle_deadline = None
                self._set(State.CONNECTING, f"link lost ({event.reason}): reconnecting")
            case ev.SpeechStarted() if s in (State.LISTENING, State.THINKING, State.SPEAKING):
                self._idle_deadline = None  # the patient is talking
                if s is not State.LISTENING:
                    self._set(State.LISTENING, "patient speaking")
            case ev.SpeechStopped() if s is State.LISTENING:
                self._set(State.THINKING, "waiting for the answer")
            case ev.AnswerStarted() if s in (State.LISTENING, State.THINKING):
                self._idle_deadline = None
                self._set(State.SPEAKING, "answering")
            case ev.AnswerFinished() if s in (State.SPEAKING, State.THINKING):
                self._set(State.LISTENING, "answer finished: speak now")
                self._arm_idle_timer()
            case ev.VisitEnded() if s in IN_VISIT:
                self._end_visit(event.reason, close=False)
            case ev.Fault():
                self._fault(event)
            case ev.Recovered():
                self._recovered(event)
            case ev.TestCallRequested():
                self._test_call(event)
            case ev.TestCallEnded() if s is State.IDLE:
                self._set(State.IDLE, self._ready_detail(event.detail))
            case ev.Heartbeat():
                event.answered.set()
            case ev.Tick():
                pass
            case _:
                log.debug("ignored %s in %s", type(event).__name__, s)

    def _blocking(self) -> list[ev.Fault]:
        return [f for f in self._persistent.values() if f.blocks_visits]

    def _press(self, event: ev.ButtonPressed) -> None:
        s = self._state
        blocking = self._blocking()
        if s is State.IDLE or (s is State.ERROR and not blocking):
            self._start_visit(event.source)
        elif s is State.ERROR:
            # Still broken: show the error again (cue and LED replay) rather than do nothing;
            # a patient who cannot see the light must hear it.
            self._set(State.ERROR, "; ".join(f.message for f in blocking),
                      error_kind=blocking[0].kind, answers_press=True)
        elif s in (State.CONNECTING, State.LISTENING):
            self._end_visit("ended by button")
        else:  # thinking or speaking: interrupt the answer, the patient wants to talk
            self.conversation.interrupt()
            self._set(State.LISTENING, "answer interrupted by button")
            self._arm_idle_timer()

    def _test_call(self, event: ev.TestCallRequested) -> None:
        """Run a test call only while nobody uses the kiosk; say why not otherwise."""
        s, call, blocking = self._state, event.call, self._blocking()
        if blocking:  # what a patient would meet now: the test call's answer is "broken"
            call.fail(f"the kiosk cannot take visits: {blocking[0].kind}: "
                      f"{blocking[0].message}")
        elif s is State.ERROR:  # a visit's failure, shown for visit.error_display_s
            shown = self.last_change.detail if self.last_change else "error"
            call.refuse(f"the kiosk is showing an error ({shown}); try again in a few seconds")
        elif s is not State.IDLE:
            call.refuse(f"a patient is using the kiosk (state {s}); try again when it is idle")
        else:
            self.conversation.test_call(call)
            self._set(State.IDLE, self._ready_detail(f"test call {call.call_id} running"))

    def _start_visit(self, source: str) -> None:
        self._visit_id = uuid.uuid4().hex[:8]
        self._error_deadline = None
        self._visit_deadline = self.clock() + self.settings.max_visit_s
        self._set(State.CONNECTING, f"pressed ({source})")
        self.conversation.start(self._visit_id)

    def _end_visit(self, reason: str, close: bool = True) -> None:
        if close:
            self.conversation.end(reason)
        self._visit_deadline = self._idle_deadline = None
        self._set(State.IDLE, self._ready_detail(reason))
        self._visit_id = None

    def _fault(self, fault: ev.Fault) -> None:
        if self._state in IN_VISIT and fault.ends_visit:
            self.conversation.end(f"{fault.kind} error")
        elif self._state in IN_VISIT:
            log.warning("%s (visit continues)", fault.message,
                        extra={"error_kind": fault.kind})
            return
        if fault.persistent:
            self._persistent[fault.kind] = fault
        self._visit_deadline = self._idle_deadline = None
        self._error_deadline = (None if self._blocking()
                                else self.clock() + self.settings.error_display_s)
        self._set(State.ERROR, fault.message, error_kind=fault.kind)
        self._visit_id = None

    def _recovered(self, event: ev.Recovered) -> None:
        if self._persistent.pop(event.kind, None) is None:
            return
        if self._state is State.ERROR and not self._blocking():
            self._error_deadline = None
            self._set(State.IDLE, self._ready_detail(event.message or f"{event.kind} recovered"))

    def _ready_detail(self, detail: str) -> str:
        """`idle` detail, naming what still does not work (e.g. no GPIO: SIGUSR1 only)."""
        degraded = [f.message for f in self._persistent.values() if not f.blocks_visits]
        return f"{detail}; still: {'; '.join(degraded)}" if degraded else detail

    def _arm_idle_timer(self) -> None:
        self._idle_deadline = self.clock() + self.settings.idle_timeout_s

    def _check_timers(self) -> None:
        now = self.clock()
        if self._visit_deadline is not None and now >= self._visit_deadline:
            self._end_visit(f"visit reached its {self.settings.max_visit_s:g} s limit")
        elif self._idle_deadline is not None and now >= self._idle_deadline:
            self._end_visit(f"no speech for {self.settings.idle_timeout_s:g} s")
        elif self._thinking_deadline is not None and now >= self._thinking_deadline:
            # The question got no answer (a lost link, a stuck service): never leave the
            # patient waiting in silence; invite them to ask again.
            self.conversation.abandon_turn()
            self._set(State.LISTENING, f"no answer within "
                                       f"{self.settings.thinking_timeout_s:g} s: please ask "
                                       "again", ask_again=True)
            self._arm_idle_timer()
        elif self._error_deadline is not None and now >= self._error_deadline:
            self._error_deadline = None
            self._set(State.IDLE, self._ready_detail("ready"))

    def _set(self, new: State, detail: str, error_kind: str | None = None,
             ask_again: bool = False, answers_press: bool = False) -> None:
        change = StateChange(self._state, new, detail, self._visit_id, self.clock(),
                             error_kind, ask_again, answers_press)
        self._state = new
        self._thinking_deadline = (self.clock() + self.settings.thinking_timeout_s
                                   if new is State.THINKING else None)
        self.last_change = change
        for observer in list(self._observers):
            try:
                observer.on_state_change(change)
            except Exception:  # a broken LED must not stop the kiosk from answering
                log.exception("state observer %s failed", type(observer).__name__)

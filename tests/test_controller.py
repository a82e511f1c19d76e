"""The state machine, driven event by event with an injectable clock (no sleeps)."""

from __future__ import annotations

import threading

import pytest

from kiosk import events as ev
from kiosk.controller import Controller
from kiosk.settings import VisitSettings
from kiosk.states import State, StateChange
from tests.harness import ManualClock


class RecordingConversation:
    """Records what the controller asked of the session (the real one is tested elsewhere)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def start(self, visit_id: str) -> None:
        self.calls.append(("start", visit_id))

    def interrupt(self) -> None:
        self.calls.append(("interrupt", None))

    def end(self, reason: str) -> None:
        self.calls.append(("end", reason))

    def abandon_turn(self) -> None:
        self.calls.append(("abandon", None))


class Recorder:
    def __init__(self) -> None:
        self.changes: list[StateChange] = []

    def on_state_change(self, change: StateChange) -> None:
        self.changes.append(change)

    @property
    def states(self) -> list[str]:
        return [c.new.value for c in self.changes]


@pytest.fixture
def kiosk():
    clock = ManualClock()
    conv = RecordingConversation()
    c = Controller(VisitSettings(idle_timeout_s=30, max_visit_s=120, error_display_s=5),
                   conv, clock=clock)
    rec, rec2 = Recorder(), Recorder()
    c.add_observer(rec)
    c.add_observer(rec2)

    def feed(*events: ev.Event) -> None:
        for e in events:
            assert c.post(e)
            c.step()

    return c, clock, conv, rec, rec2, feed


def test_full_conversation_turn_and_every_observer_sees_each_change_in_order(kiosk):
    c, clock, conv, rec, rec2, feed = kiosk
    feed(ev.ButtonPressed())
    assert c.state is State.CONNECTING and conv.calls == [("start", c.visit_id)]
    sid = c.visit_id
    feed(ev.VisitReady(), ev.SpeechStarted(), ev.SpeechStopped(), ev.AnswerStarted("it1"),
         ev.AnswerFinished("it1"), ev.ButtonPressed())
    expected = ["connecting", "listening", "thinking", "speaking", "listening", "idle"]
    assert rec.states == expected
    assert rec2.changes == rec.changes
    assert [c.old.value for c in rec.changes] == ["idle"] + expected[:-1]
    assert all(ch.visit_id == sid for ch in rec.changes)
    assert conv.calls[-1] == ("end", "ended by button")
    assert c.visit_id is None


def test_press_while_speaking_interrupts_and_returns_to_listening(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.ButtonPressed(), ev.VisitReady(), ev.SpeechStopped(), ev.AnswerStarted("a"))
    feed(ev.ButtonPressed(source="sigusr1"))
    assert c.state is State.LISTENING
    assert ("interrupt", None) in conv.calls and not any(k == "end" for k, _ in conv.calls)


def test_voice_barge_in_goes_back_to_listening(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.ButtonPressed(), ev.VisitReady(), ev.SpeechStopped(), ev.AnswerStarted("a"),
         ev.SpeechStarted())
    assert rec.states[-2:] == ["speaking", "listening"]


def test_long_press_ends_the_session_from_any_session_state(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    for prefix in ([], [ev.VisitReady()], [ev.VisitReady(), ev.SpeechStopped()],
                   [ev.VisitReady(), ev.SpeechStopped(), ev.AnswerStarted("x")]):
        feed(ev.ButtonPressed(), *prefix, ev.ButtonPressed(long=True))
        assert c.state is State.IDLE
        assert conv.calls[-1] == ("end", "ended by long press")
    feed(ev.ButtonPressed(long=True))  # idle: nothing to end
    assert c.state is State.IDLE and rec.states[-1] == "idle"


def test_idle_timeout_ends_the_session_and_speech_postpones_it(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.ButtonPressed(), ev.VisitReady())
    clock.advance(29.9)
    feed(ev.Tick())
    assert c.state is State.LISTENING
    feed(ev.SpeechStarted())  # talking for a long time is not "no speech"
    clock.advance(60)
    feed(ev.Tick())
    assert c.state is State.LISTENING
    feed(ev.SpeechStopped(), ev.AnswerStarted("a"), ev.AnswerFinished("a"))
    clock.advance(30)
    feed(ev.Tick())
    assert c.state is State.IDLE
    assert rec.changes[-1].detail == "no speech for 30 s"
    assert conv.calls[-1] == ("end", "no speech for 30 s")


def test_max_session_caps_a_busy_session(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.ButtonPressed(), ev.VisitReady())
    for _ in range(5):  # keep talking so the idle timer never fires
        feed(ev.SpeechStarted())
        clock.advance(25)
        feed(ev.Tick())
    assert c.state is State.IDLE
    assert "120 s limit" in rec.changes[-1].detail


def test_fault_shows_error_then_recovers_to_idle_by_itself(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.ButtonPressed(), ev.Fault("unavailable", "gateway unavailable (503)"))
    assert c.state is State.ERROR and rec.changes[-1].error_kind == "unavailable"
    assert conv.calls[-1] == ("end", "unavailable error")
    clock.advance(4.9)
    feed(ev.Tick())
    assert c.state is State.ERROR
    clock.advance(0.2)
    feed(ev.Tick())
    assert rec.states[-2:] == ["error", "idle"]


def test_press_during_a_transient_error_retries_at_once(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.ButtonPressed(), ev.Fault("network", "network down"), ev.ButtonPressed())
    assert c.state is State.CONNECTING
    clock.advance(10)
    feed(ev.Tick())  # the old error display timer must not fire into the new session
    assert c.state is State.CONNECTING


def test_persistent_fault_holds_error_until_recovered(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.Fault("device", "microphone 'USB' missing", persistent=True))
    clock.advance(60)
    feed(ev.Tick(), ev.ButtonPressed())
    assert c.state is State.ERROR and not conv.calls
    assert rec.states == ["error", "error"]  # the press replays the error indication
    feed(ev.Fault("device", "speaker 'USB' missing too", persistent=True))
    # Only the replay answers a press (a spoken prompt is said then, never for a new fault).
    assert [ch.answers_press for ch in rec.changes] == [False, True, False]
    feed(ev.Recovered("device", "microphone back"))
    assert c.state is State.IDLE and rec.changes[-1].detail == "microphone back"


def test_session_ended_by_server_goes_idle_without_closing_twice(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.ButtonPressed(), ev.VisitReady(), ev.VisitEnded("session expired"))
    assert c.state is State.IDLE and rec.changes[-1].detail == "session expired"
    assert [k for k, _ in conv.calls] == ["start"]


def test_non_ending_fault_keeps_the_session(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.ButtonPressed(), ev.VisitReady(),
         ev.Fault("protocol", "bad message dropped", ends_visit=False))
    assert c.state is State.LISTENING


def test_out_of_order_events_are_ignored(kiosk):
    c, clock, conv, rec, _, feed = kiosk
    feed(ev.SpeechStopped(), ev.AnswerStarted("a"), ev.VisitReady(), ev.AnswerFinished("a"))
    assert c.state is State.IDLE and rec.changes == []


def test_broken_observer_does_not_stop_the_controller(kiosk):
    c, clock, conv, rec, _, feed = kiosk

    class Broken:
        def on_state_change(self, change: StateChange) -> None:
            raise RuntimeError("LED driver fell over")

    c._observers.insert(0, Broken())
    feed(ev.ButtonPressed())
    assert rec.states == ["connecting"]


def test_queue_is_bounded_and_post_never_blocks():
    c = Controller(VisitSettings(), RecordingConversation(), queue_size=4)
    assert all(c.post(ev.Tick()) for _ in range(4))
    assert c.post(ev.ButtonPressed()) is False and c.dropped_events == 1


def test_loop_thread_applies_events_from_other_threads_and_stops():
    conv = RecordingConversation()
    c = Controller(VisitSettings(), conv)
    seen = threading.Event()

    class Waiter:
        def on_state_change(self, change: StateChange) -> None:
            if change.new is State.LISTENING:
                seen.set()

    c.add_observer(Waiter())
    c.start()
    threading.Thread(target=lambda: (c.post(ev.ButtonPressed()),
                                     c.post(ev.VisitReady()))).start()
    assert seen.wait(5)
    assert c.alive()
    c.stop()
    assert not c.alive()
    assert conv.calls[-1] == ("end", "kiosk stopping")

"""The demo's on-screen status light, and the observer contract it shares with the LED."""

from __future__ import annotations

import io

import pytest

from kiosk.hw.leds import StatusLight
from kiosk.hw.terminal import TerminalDisplay
from kiosk.settings import GpioSettings
from kiosk.states import State, StateChange

from .hw_scope import wait_until

SESSION = [
    StateChange(State.IDLE, State.CONNECTING, "button pressed", "s1", at=10.000),
    StateChange(State.CONNECTING, State.LISTENING, "connected", "s1", at=10.142),
    StateChange(State.LISTENING, State.ERROR, "gateway unavailable (503)", "s1", at=12.5,
                error_kind="network"),
    StateChange(State.ERROR, State.IDLE, "", None, at=17.5),
]


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, like sys.stdout in an interactive shell."""

    def isatty(self) -> bool:
        return True


def play(display: TerminalDisplay, stream: io.StringIO) -> list[str]:
    for change in SESSION:
        display.on_state_change(change)
    return stream.getvalue().splitlines()


def test_plain_text_lines():
    out = io.StringIO()
    assert play(TerminalDisplay(out, color=False), out) == [
        "● connecting  button pressed",
        "● listening   connected (+142 ms)",
        "● error       gateway unavailable (503) [network] (+2358 ms)",
        "● idle        (+5000 ms)",
    ]


def test_coloured_dots():
    out = io.StringIO()
    lines = play(TerminalDisplay(out, color=True), out)
    assert lines[0] == "\033[33m●\033[0m connecting  button pressed"
    assert lines[1] == "\033[32m●\033[0m listening   connected (+142 ms)"
    assert lines[2].startswith("\033[1;31m●\033[0m error ")
    assert lines[3].startswith("\033[34m●\033[0m idle ")


def test_colour_by_default_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert TerminalDisplay(FakeTerminal()).color is True
    assert TerminalDisplay(io.StringIO()).color is False  # a pipe or a log file
    monkeypatch.setenv("NO_COLOR", "1")
    assert TerminalDisplay(FakeTerminal()).color is False
    out = FakeTerminal()
    assert "\033[" not in "".join(play(TerminalDisplay(out), out))


def test_ascii_only_stream_gets_a_star():
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    TerminalDisplay(out, color=False).on_state_change(SESSION[1])
    assert raw.getvalue() == b"* listening   connected\n"


def test_light_and_display_observe_the_same_changes(factory):
    # The controller hands every observer the same StateChange; nothing else is needed to add
    # an indicator.
    out = io.StringIO()
    light = StatusLight(GpioSettings(led_kind="pwm", led_pin=18), factory)
    observers = [light, TerminalDisplay(out, color=False)]
    try:
        for change in SESSION[:2]:
            for observer in observers:
                observer.on_state_change(change)
        assert wait_until(lambda: light.state is State.LISTENING, timeout_s=2)
        assert factory.pin(18).state == 1.0
        assert out.getvalue().splitlines()[-1] == "● listening   connected (+142 ms)"
    finally:
        light.close()


@pytest.mark.parametrize("state", list(State))
def test_every_state_has_a_colour(state):
    out = io.StringIO()
    TerminalDisplay(out, color=True).on_state_change(
        StateChange(State.IDLE, state, "x", None, at=0.0))
    assert out.getvalue().startswith("\033[") and f" {state.value} " in out.getvalue()

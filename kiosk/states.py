"""The kiosk's six states: the one vocabulary used by logs, LED, sounds, systemd and the demo."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    ERROR = "error"


@dataclass(frozen=True)
class StateChange:
    """What observers receive: one per transition, in order, from the controller thread."""

    old: State
    new: State
    detail: str  # short human text, e.g. "button pressed" or "gateway unavailable (503)"
    visit_id: str | None  # the kiosk's own id of the current visit, for log correlation
    at: float  # monotonic seconds (the controller's clock)
    error_kind: str | None = None  # set when new is ERROR: auth, network, device, protocol...
    ask_again: bool = False  # the patient's question got no answer: invite them to repeat it
    answers_press: bool = False  # an error shown again because of a press (not a new fault)

"""Inputs to the controller. Every thread (button, audio, conversation, signals) only posts one
of these to the controller's bounded queue; only the controller thread changes state.

Vocabulary, the same in code, logs and README: a *visit* is one press of the button to the
end of that conversation; a *grant* is one answer of the gateway (a token for the speech
service); a *link* is one WebSocket to the speech service; a *turn* is one question of the
patient and its answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiosk.test_call.call import TestCall


@dataclass(frozen=True)
class Event:
    """Base class of everything posted to the controller."""


@dataclass(frozen=True)
class ButtonPressed(Event):
    long: bool = False
    source: str = "button"  # "button", "sigusr1", "keyboard", "switch"


@dataclass(frozen=True)
class VisitReady(Event):
    """The link is open and configured: the patient's audio is flowing to the service."""

    # After a reconnect that re-asked a question left without an answer: the kiosk is
    # waiting for that answer (thinking), not for the patient.
    turn_pending: bool = False


@dataclass(frozen=True)
class LinkLost(Event):
    """The link dropped mid-visit; the conversation is reconnecting (shown as connecting)."""

    reason: str = ""


@dataclass(frozen=True)
class SpeechStarted(Event):
    """The service heard the patient start talking."""


@dataclass(frozen=True)
class SpeechStopped(Event):
    """The service decided the patient finished a turn: now `thinking`."""


@dataclass(frozen=True)
class AnswerStarted(Event):
    """The first sample of the answer reached the speaker."""

    item_id: str | None = None


@dataclass(frozen=True)
class AnswerFinished(Event):
    """The answer's audio has played out completely (or was cancelled)."""

    item_id: str | None = None


@dataclass(frozen=True)
class VisitEnded(Event):
    """The visit's link closed on its own (the service's time cap, a clean close). Not an
    error."""

    reason: str = "ended"


@dataclass(frozen=True)
class Fault(Event):
    """Something failed: shown as `error`, then the kiosk recovers to idle by itself."""

    kind: str  # auth, network, unavailable, protocol, device, config, gpio, internal
    message: str
    ends_visit: bool = True
    # A persistent fault (e.g. the microphone is unplugged) lasts until a matching
    # Recovered(kind) arrives; a transient one is shown, then the kiosk goes idle.
    persistent: bool = False
    # Whether a persistent fault keeps the kiosk in `error` and refuses visits (no microphone,
    # no gateway configured). One that does not (no GPIO: SIGUSR1 and sound still work) is
    # shown like a transient fault, then reported in the `idle` status while it lasts.
    blocks_visits: bool = True


@dataclass(frozen=True)
class Recovered(Event):
    """A persistent fault of this kind has cleared (e.g. the USB microphone is back)."""

    kind: str
    message: str = ""


@dataclass(frozen=True)
class TestCallRequested(Event):
    """IT asked for a remote test call (SIGUSR2, `voice-kiosk test-call`). The controller runs
    it only while idle; otherwise it refuses it (or fails it, while a fault blocks visits)."""

    __test__ = False  # not a pytest test class, despite its name
    call: TestCall


@dataclass(frozen=True)
class TestCallEnded(Event):
    """A test call has its result: `detail` goes into the idle status (STATUS=, the log)."""

    __test__ = False
    detail: str


@dataclass(frozen=True)
class Heartbeat(Event):
    """The watchdog asks whether the loop turns: the controller sets `answered` when it gets
    here. (An idle controller sleeps until something happens: no periodic heartbeat.)"""

    answered: threading.Event


@dataclass(frozen=True)
class Tick(Event):
    """Wakes the controller to check its timers (posted by its own loop or by tests)."""


@dataclass(frozen=True)
class Stop(Event):
    """Shut down: end any visit and leave the loop."""

"""Inputs to the controller. Every thread (button, audio, session, timers, signals) only posts
one of these to the controller's bounded queue; only the controller thread changes state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """Base class; `source` says who posted it (for the debug log)."""


@dataclass(frozen=True)
class ButtonPressed(Event):
    long: bool = False
    source: str = "button"  # "button", "sigusr1", "keyboard"


@dataclass(frozen=True)
class SessionReady(Event):
    """The realtime session is configured: audio is flowing to the server."""


@dataclass(frozen=True)
class SpeechStarted(Event):
    """The server heard the patient start talking (or the playback was barged in on)."""


@dataclass(frozen=True)
class SpeechStopped(Event):
    """The server decided the patient finished a turn: now `thinking`."""


@dataclass(frozen=True)
class AnswerStarted(Event):
    """The first sample of the answer reached the speaker."""

    item_id: str | None = None


@dataclass(frozen=True)
class AnswerFinished(Event):
    """The answer's audio has played out completely (or was cancelled)."""

    item_id: str | None = None


@dataclass(frozen=True)
class SessionEnded(Event):
    """The session closed on its own (server cap, clean close). Not an error."""

    reason: str = "ended"


@dataclass(frozen=True)
class Fault(Event):
    """Something failed: shown as `error`, then the kiosk recovers to idle by itself."""

    kind: str  # auth, network, unavailable, protocol, device, config, internal
    message: str
    ends_session: bool = True
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
class Tick(Event):
    """Wakes the controller to check its timers (posted by its own loop or by tests)."""


@dataclass(frozen=True)
class Stop(Event):
    """Shut down: end any session and leave the loop."""

"""The messages a visit handles, one at a time, from the conversation's one bounded queue.

The controller sends `Command` and `StartTestCall`, the speaker `PlaybackNote`; a visit's own
I/O tasks report `LinkUp`, `ConnectFailed`, `ServerEvent` and `LinkDown`, each naming the visit
(and link) it belongs to, so a late report from an ended visit or a replaced link is told apart
and dropped (`kiosk.conversation` routes by visit, `kiosk.visit.Visit.handle` by link).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiosk import events as ev
from kiosk.session.link import Link

if TYPE_CHECKING:
    from kiosk.test_call.call import TestCall
    from kiosk.visit import Visit


@dataclass(frozen=True)
class Command:
    """From the controller: start, interrupt, end, abandon (the turn), stop (the kiosk)."""

    name: str
    arg: str = ""


@dataclass(frozen=True)
class StartTestCall:
    """From the controller: run this remote test call now (kiosk.test_call)."""

    call: TestCall


@dataclass(frozen=True)
class PlaybackNote:
    """From the speaker: ("started" | "drained" | "flushed", item id)."""

    kind: str
    item_id: str


@dataclass(frozen=True)
class LinkUp:
    visit: Visit
    link: Link


@dataclass(frozen=True)
class ConnectFailed:
    visit: Visit
    fault: ev.Fault


@dataclass(frozen=True)
class ServerEvent:
    visit: Visit
    link: Link
    event: dict[str, Any]


@dataclass(frozen=True)
class LinkDown:
    visit: Visit
    link: Link
    code: int | None
    reason: str


Message = Command | StartTestCall | PlaybackNote | LinkUp | ConnectFailed | ServerEvent | LinkDown

"""The status light's stand-in on a screen: one line per state change, for the demo.

Like :class:`~kiosk.hw.leds.StatusLight`, :class:`TerminalDisplay` is a plain observer with an
``on_state_change(change)`` method; the controller calls every observer the same way, so more
indicators (an LED ring, a screen) can be added without touching controller code.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from kiosk.states import State, StateChange

# ANSI foreground colours close to the RGB LED's default colours (kiosk.settings).
ANSI_COLORS: dict[State, str] = {
    State.IDLE: "\033[34m",  # blue
    State.CONNECTING: "\033[33m",  # amber -> yellow
    State.LISTENING: "\033[32m",  # green
    State.THINKING: "\033[36m",  # cyan
    State.SPEAKING: "\033[1;37m",  # bright white
    State.ERROR: "\033[1;31m",  # bright red
}
RESET = "\033[0m"
DOT = "\u25cf"  # ●
STATE_WIDTH = max(len(s.value) for s in State) + 1  # the details line up in one column


class TerminalDisplay:
    """Prints each state change as a line like ``● listening   connected (+142 ms)``.

    The dot is coloured like the RGB LED would be when colour is on; the number in brackets is
    how long the previous state lasted (measured on the controller's clock, `change.at`). The
    first line has none. An error also shows its kind, e.g. ``[network]``::

        display = TerminalDisplay()          # colour if stdout is a terminal
        display.on_state_change(StateChange(State.IDLE, State.CONNECTING,
                                            "button pressed", None, at=12.0))

    :param stream:
        Where to write; defaults to ``sys.stdout``. Each line is flushed at once.
    :param color:
        ``True`` always writes ANSI colour codes, ``False`` never. ``None`` (the default) uses
        colour when `stream` is a terminal, unless the ``NO_COLOR`` environment variable is set
        or ``TERM`` is ``dumb``.
    """

    def __init__(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._color = _wants_color(self._stream) if color is None else color
        self._dot = DOT if _can_encode(self._stream, DOT) else "*"
        self._last_at: float | None = None

    @property
    def color(self) -> bool:
        """Whether lines carry ANSI colour codes."""
        return self._color

    def on_state_change(self, change: StateChange) -> None:
        """Observer hook: write one line for `change`."""
        self._stream.write(self.format(change) + "\n")
        self._stream.flush()

    def format(self, change: StateChange) -> str:
        """The line for `change` (without newline); remembers `change.at` for the next one."""
        dot = f"{ANSI_COLORS[change.new]}{self._dot}{RESET}" if self._color else self._dot
        parts = [f"{dot} {change.new.value:<{STATE_WIDTH}}", change.detail]
        if change.error_kind:
            parts.append(f"[{change.error_kind}]")
        if self._last_at is not None:
            parts.append(f"(+{round((change.at - self._last_at) * 1000)} ms)")
        self._last_at = change.at
        return " ".join(p for p in parts if p).rstrip()


def _wants_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _can_encode(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True

"""The seams between the kiosk's parts, as typing Protocols.

The controller talks to a `Conversation`; the conversation talks to an `AudioPort`
(capture, playback, cues). Real implementations live in `kiosk/conversation.py` and
`kiosk/audio/engine.py`; tests may pass fakes that satisfy the same protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

if TYPE_CHECKING:
    from kiosk.test_call.call import TestCall

SAMPLE_RATE_HZ = 24000  # the realtime service's only PCM rate
BYTES_PER_SAMPLE = 2


class Frame(NamedTuple):
    """One capture frame: `frame_ms` of 24 kHz mono int16, stamped when it was captured.

    A NamedTuple, not a dataclass: fifty are made per second and it is the cheapest
    immutable record to build.
    """

    pcm: np.ndarray  # int16, shape (samples,)
    captured_at: float  # time.monotonic() of the frame's last sample reaching the callback


class CapturePort(Protocol):
    def arm(self) -> None:
        """Start keeping microphone audio (button pressed). Clears older audio first."""

    def disarm(self) -> None:
        """Stop keeping audio and drop what is buffered (visit over)."""

    def read_frame(self, timeout_s: float) -> Frame | None:
        """Next frame in order, or None after `timeout_s` (0: do not wait) with nothing."""

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Called from the audio thread (must not block) each time audio was kept while
        armed: frames may be ready to read."""

    @property
    def dropped_samples(self) -> int:
        """Oldest samples dropped because the backlog was full (link stalled)."""


class PlaybackPort(Protocol):
    def set_listener(self, listener: Callable[[str, str], None] | None) -> None:
        """Called from the audio thread (must not block: post and return) with
        ("started", item_id) when an item's first sample reaches the device,
        ("drained", item_id) when it has played out after `end_item`, and
        ("flushed", item_id) after `flush`."""

    def write(self, item_id: str, pcm: bytes) -> None:
        """Queue 24 kHz PCM16 answer audio of an assistant item (starts after prebuffer)."""

    def end_item(self, item_id: str) -> None:
        """The item's audio is complete: play out even if below the prebuffer."""

    def flush(self, keep_cue: bool = False) -> int:
        """Barge-in: fade out within one output block and drop the queue (and a cue playing
        over it, unless `keep_cue`). Never waits for the device; returns ms played of the
        item that was playing (never more than was written)."""

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of this item that actually reached the device."""

    @property
    def busy(self) -> bool:
        """True while answer or cue audio is queued or playing (the echo gate follows this)."""


class AudioPort(Protocol):
    @property
    def capture(self) -> CapturePort: ...

    @property
    def playback(self) -> PlaybackPort: ...

    def alive(self) -> bool:
        """Streams open and their callbacks running (for the systemd watchdog)."""


class Conversation(Protocol):
    """The talking part of a visit, driven by the controller. Every method only posts to the
    conversation's own queue and returns at once."""

    def start(self, visit_id: str) -> None:
        """Arm capture at once, then connect in the background."""

    def interrupt(self) -> None:
        """Button barge-in: stop the answer now and go back to listening."""

    def end(self, reason: str) -> None:
        """Close the visit's link and stop streaming. Idempotent."""

    def abandon_turn(self) -> None:
        """The patient's question got no answer in time: drop it and any late answer."""

    def test_call(self, call: TestCall) -> None:
        """Run a remote test call now (the controller is idle); a `start` ends it."""

"""Where each block of one audio stream belongs on the monotonic clock, in sample positions.

The echo canceller pairs what the speaker played with what the microphone heard by time, so
every block needs a position, and PortAudio's time stamps are not exact:

* a stream's blocks are contiguous, but their stamps jitter (~0.1 ms through PulseAudio,
  more on some hosts): taken one by one they would tear the audio apart;
* at an output stream's start PortAudio calls back a few times to fill the buffer before it
  knows the latency: measured through PulseAudio, the first three blocks of a new stream were
  stamped 3 to 48 ms early, the fourth and later to within 0.5 ms. Anchored on its first
  block, a stream kept that error for its whole life (up to the 10 ms that still counted as
  "the same stream"), so the echo's delay moved from one output stream to the next and AEC3
  had to find it again while the patient's first words came;
* a device's clock drifts from the monotonic clock (tens of ppm for a USB speaker: ms per
  minute), and a stream that underruns skips ahead.

`StreamTimeline` keeps a stream's blocks contiguous and looks at the median of how far the
stamps are from that, over `votes` blocks (2 s of 20 ms blocks): when it is off by more than
`tolerance_ms` the stream is moved by that much. In its first `young_s` a stream is looked at
every `young_votes` blocks, with the looser `young_tolerance_ms`, and moved together with what
it already placed: a stream that started later than its first stamps said is moved as a whole,
before the canceller learns the wrong delay. Every move is a step that the canceller has to
follow, so jitter alone must not move a stream: after its youth a stream moves only when the
median is also five of its own standard errors away (estimated from the stamps' spread;
through PulseAudio here they were within +-0.1 ms, and a median of 100 within a few
hundredths of a ms). A stamp further off than `restart_ms` starts the stream anew (a new
stream, a long gap).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Move:
    """What `place` moved: the samples placed at [start, stop) now belong `by` later."""

    start: int
    stop: int
    by: int


class StreamTimeline:
    """Positions for the blocks of one stream from their time stamps (see the module doc)."""

    def __init__(self, rate_hz: int, *, tolerance_ms: float = 1.0, votes: int = 100,
                 young_s: float = 0.5, young_tolerance_ms: float = 2.0, young_votes: int = 8,
                 restart_ms: float = 200.0) -> None:
        self.tolerance = int(round(tolerance_ms * rate_hz / 1000))
        self.votes = votes
        self.young = int(young_s * rate_hz)
        self.young_tolerance = int(round(young_tolerance_ms * rate_hz / 1000))
        self.young_votes = young_votes
        self.restart = int(restart_ms * rate_hz / 1000)
        self._offsets: list[int] = []  # stamp minus position, since the last look
        self._start: int | None = None  # where the stream (as now placed) began
        self._next: int | None = None  # where its next block goes
        self.moves = 0
        """Times a stream was moved after its start (its stamps said it belongs elsewhere)."""
        self.restarts = 0

    @property
    def end(self) -> int | None:
        """The position after the last block placed (None before the first)."""
        return self._next

    def place(self, stamp: int, n: int) -> tuple[int, Move | None]:
        """The position of the next block (`n` samples, stamped at `stamp`), and what of the
        stream placed before it has to move (None when nothing)."""
        nxt, start = self._next, self._start
        if nxt is None or start is None or abs(stamp - nxt) > self.restart:
            self.restarts += nxt is not None
            self._start, self._next = stamp, stamp + n
            self._offsets.clear()
            return stamp, None
        offsets = self._offsets
        offsets.append(stamp - nxt)
        young = nxt - start <= self.young
        move = None
        if len(offsets) >= (self.young_votes if young else self.votes):
            by = int(statistics.median_low(offsets))
            limit = self.young_tolerance if young else max(self.tolerance,
                                                            5.0 * _median_error(offsets))
            offsets.clear()
            if abs(by) > limit:
                if young:
                    move = Move(start, nxt, by)
                    self._start = start + by
                nxt += by
                self.moves += 1
        self._next = nxt + n
        return nxt, move


def _median_error(xs: list[int]) -> float:
    """The standard error of the median of `xs`, from their interquartile range (as if
    normal: sigma = IQR / 1.349; the median's error is 1.25 sigma / sqrt(n))."""
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return 1.25 * (q3 - q1) / 1.349 / math.sqrt(len(xs))

"""An energy-based voice activity detector like the service's server VAD: speech starts when a
10 ms window is loud, and stops after `silence_duration_ms` of quiet windows. Positions are in
milliseconds of audio appended since the connection opened (the service's audio_*_ms)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW_MS = 10
SAMPLES_PER_WINDOW = 24000 * WINDOW_MS // 1000


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "started" or "stopped"
    at_ms: int  # audio_start_ms for started (prefix padding applied), audio_end_ms for stopped


class EnergyVad:
    def __init__(self, threshold_rms: float = 600.0, silence_duration_ms: int = 500,
                 prefix_padding_ms: int = 300) -> None:
        self.threshold_rms = threshold_rms
        self.silence_duration_ms = silence_duration_ms
        self.prefix_padding_ms = prefix_padding_ms
        self._pending = np.zeros(0, dtype=np.int16)
        self._windows = 0  # windows processed so far
        self.speaking = False
        self._last_loud_end_ms = 0

    def feed(self, pcm: np.ndarray) -> list[VadEvent]:
        """Process appended samples; returns the transitions they caused, in order."""
        events: list[VadEvent] = []
        data = np.concatenate([self._pending, pcm.astype(np.int16)])
        whole = len(data) // SAMPLES_PER_WINDOW * SAMPLES_PER_WINDOW
        self._pending = data[whole:]
        for window in data[:whole].reshape(-1, SAMPLES_PER_WINDOW):
            start_ms = self._windows * WINDOW_MS
            self._windows += 1
            rms = float(np.sqrt(np.mean(window.astype(np.float64) ** 2)))
            if rms >= self.threshold_rms:
                if not self.speaking:
                    self.speaking = True
                    events.append(VadEvent("started",
                                           max(0, start_ms - self.prefix_padding_ms)))
                self._last_loud_end_ms = start_ms + WINDOW_MS
            elif self.speaking and (start_ms + WINDOW_MS - self._last_loud_end_ms
                                    >= self.silence_duration_ms):
                self.speaking = False
                events.append(VadEvent("stopped", self._last_loud_end_ms))
        return events

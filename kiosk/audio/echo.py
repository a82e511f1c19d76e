"""What keeps the kiosk's own voice out of what the service hears (`audio.echo_mode`).

Three modes, chosen by IT staff for the bedside's hardware:

* ``aec``: WebRTC's echo canceller in-process (`kiosk.audio.aec`). The speaker's
  output is the reference; the patient can talk over an answer ("stop", "wait") and the
  service hears them, not the answer. Until the canceller has converged once after start
  (about 5 s of the first answer) the microphone is muted while the kiosk speaks, as with the
  gate. When the canceller does not converge in a visit (its
  echo reduction stays below the threshold after a few seconds of playback) the microphone
  falls back to the gate for the rest of that visit: logged once, counted
  (``voice_kiosk_aec_fallbacks_total``). Without the WebRTC library (no wheel for 32-bit
  Raspberry Pi OS) the kiosk uses the gate and says so once at start.
* ``gate`` (the default: ``aec`` keeps both streams open at idle and costs memory and CPU
  that the default configuration's goals do not allow, see the README): the microphone
  is not kept while the speaker plays (answer or cue, plus the
  device's latency); the button still interrupts.
* ``none``: the microphone is always kept (an echo-cancelling speakerphone does the work).

`EchoControl` is the one owner of this choice. The capture callback asks `gate_closed()`;
the reader's thread passes each frame through `clean()`; the playback callback hands every
block it renders to `reference()`; `new_visit()` clears the verdict at arm().
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kiosk.audio.aec import AecStats, EchoCanceller
from kiosk.audio.aec_backend import AecUnavailable
from kiosk.ports import SAMPLE_RATE_HZ, Frame
from kiosk.settings import AudioSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EchoStats:
    """A snapshot for the metrics and `voice-kiosk test-audio`."""

    configured: str  # the config's echo_mode
    effective: str  # what runs: aec, gate (configured or the library is missing), none
    aec: AecStats | None  # None unless the canceller runs
    fallbacks: int  # visits in which the canceller failed and the gate took over


class EchoControl:
    """The echo mode in effect and, for ``aec``, the canceller between speaker and mic."""

    def __init__(self, settings: AudioSettings, speaker_busy: Callable[[], bool],
                 canceller: Callable[[int], EchoCanceller] | None = None) -> None:
        self.configured = settings.echo_mode
        self._busy = speaker_busy
        self._frame_samples = SAMPLE_RATE_HZ * settings.frame_ms // 1000
        self.canceller: EchoCanceller | None = None
        self.unavailable: str | None = None
        """Why ``aec`` was configured but the gate runs (the library is missing)."""
        if settings.echo_mode == "aec":
            try:
                make = canceller or (lambda n: EchoCanceller(SAMPLE_RATE_HZ, n))
                self.canceller = make(self._frame_samples)
            except AecUnavailable as exc:
                self.unavailable = str(exc)
                log.warning("audio.echo_mode is aec but %s; using the echo gate (the patient "
                            "cannot interrupt an answer by voice, the button still does)", exc)
        self.effective = ("aec" if self.canceller is not None
                          else "gate" if settings.echo_mode in ("gate", "aec") else "none")
        self._fallback_seen = False
        self.fallbacks = 0
        self.proven = False
        """The canceller has converged at least once since start (see `clean`)."""
        self._lock = threading.Lock()  # clean() vs. new_visit() from another thread

    # -- called from the audio callbacks (cheap, never blocking) ------------------------

    def gate_closed(self) -> bool:
        """The capture callback drops its block while this is true."""
        if self.effective == "gate":
            return self._busy()
        canceller = self.canceller
        return canceller is not None and canceller.failed and self._busy()

    def reference(self, mono: np.ndarray, dac_time: float) -> None:
        """What the speaker plays from `dac_time` on (24 kHz mono int16), silence included."""
        canceller = self.canceller
        if canceller is not None:
            canceller.push_reference(mono, dac_time)

    @property
    def wants_reference(self) -> bool:
        return self.canceller is not None

    # -- called from the reader's thread -----------------------------------------------

    def clean(self, frame: Frame, input_latency_s: float) -> Frame | None:
        """The frame with the speaker's echo removed (unchanged unless ``aec`` runs), or
        None while the canceller has never converged and the frame may hold echo."""
        canceller = self.canceller
        if canceller is None or len(frame.pcm) != canceller.frame_samples:
            return frame
        frame_s = len(frame.pcm) / SAMPLE_RATE_HZ
        with self._lock:
            pcm = canceller.process(frame.pcm, frame.captured_at - frame_s - input_latency_s)
            failed = canceller.failed
            mode = canceller.mode
            # Taken with the mode: new_visit() on another thread could reset it between.
            first_active = canceller.stats() if mode == "active" and not self.proven else None
        if first_active is not None:
            self.proven = True
            erle_db, delay_ms = first_active.erle_db, first_active.delay_ms
            log.info("echo canceller converged (echo reduced by %s, echo delay %s): the "
                     "patient can now interrupt an answer by voice",
                     "n/a" if erle_db is None else f"{erle_db:.1f} dB",
                     "n/a" if delay_ms is None else f"{delay_ms:.0f} ms")
        elif mode == "converging" and not self.proven and (canceller.echo_expected
                                                              or self._busy()):
            # The first seconds of playback since start: AEC3 is still finding the echo
            # path and lets bursts of echo through (measured on the echo rig: 10 ms windows
            # up to -30 dBFS, which a voice detector takes for the patient). Until it has
            # converged once, what the microphone hears while the kiosk speaks is dropped,
            # as the gate drops it (and to the end of the echo's reverberation, by the
            # frame's own time); the canceller itself keeps learning from it. Dropped, not
            # sent as zeros: the service's voice detector takes 0.65 s of digital silence
            # (a chime and its tail) for the end of a turn, and a patient who was already
            # talking at the press got an answer to their first 0.1 s (bench/process.py's
            # listening phase with aec, in a room where the speaker is not heard).
            return None
        if failed and not self._fallback_seen:
            self._fallback_seen = True
            self.fallbacks += 1
            stats = canceller.stats()
            erle = "n/a" if stats.erle_db is None else f"{stats.erle_db:.1f} dB"
            log.warning("echo canceller did not converge (echo reduced by %s after %.1f s of "
                        "playback, need %.0f dB): the microphone is muted while the kiosk "
                        "speaks for the rest of this visit. If this repeats, check the "
                        "speaker and microphone are the configured devices and not too "
                        "close, or set audio.echo_mode: gate", erle, stats.far_active_s,
                        canceller.erle_threshold_db, extra={"error_kind": "device"})
        return Frame(pcm.copy(), frame.captured_at)

    def new_visit(self) -> None:
        """A new visit: the canceller's verdict starts again (the room's delay is kept)."""
        canceller = self.canceller
        if canceller is not None:
            with self._lock:
                canceller.reset()
        self._fallback_seen = False

    def stats(self) -> EchoStats:
        canceller = self.canceller
        return EchoStats(self.configured, self.effective,
                         canceller.stats() if canceller is not None else None, self.fallbacks)

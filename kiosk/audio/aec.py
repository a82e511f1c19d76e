"""In-process acoustic echo cancellation: WebRTC's AEC3 (pywebrtc-audio) around the kiosk.

Why a wrapper: AEC3 removes the echo well when it is given the right reference at about the
right time, but it cannot say whether it does, and fed a reference that is not what the
microphone hears (a muted speaker, a wrong delay) it suppresses the patient's own voice. The
wrapper pairs the reference with the microphone by time, tracks the echo's delay, bypasses the
canceller when nothing plays, and measures ERLE so the engine can fall back to the echo gate.
The evidence for the library is in ``bench/AEC-EVALUATION.md``.

What the engine must pass (all audio int16 mono at `rate_hz`, the kiosk's 24 000 Hz):

* ``push_reference(pcm, dac_time)`` from the **playback callback**, every block, silence
  included: exactly the samples handed to the device (answer and cues, after volume), mixed to
  mono and, for a 48 kHz device, resampled to 24 kHz; ``dac_time`` is ``time.monotonic()`` at
  which the block's first sample leaves the speaker: the callback's time plus
  ``time_info["output_buffer_dac_time"] - time_info["current_time"]``. Any block length.
* ``process(frame, adc_time)`` from the **capture reader** (the thread that calls
  `Capture.read_frame`), once per frame of `frame_samples` (a multiple of 10 ms; the kiosk's
  20 ms frame is 480 samples): ``adc_time`` is when the frame's first sample entered the
  microphone: ``frame.captured_at - frame_s - input latency`` (``input_buffer_adc_time``).
  It returns the cleaned frame in a buffer that is reused by the next call (copy to keep it).
  The output lags its input by ~9 ms (AEC3's framing); the kiosk sends it as it comes.

PortAudio's stamps are not taken one by one: each side's blocks are placed on a
`StreamTimeline` (kiosk/audio/timeline.py), which keeps a stream contiguous through jitter,
moves an output stream whose first blocks were stamped early (PortAudio's prefill, 3-48 ms
through PulseAudio) and follows a device clock that drifts.

The two calls may run on different threads (the reference ring has a lock held for a copy);
`process` must always be called from the same thread (AEC3 is not thread-safe). After
construction no array is allocated per frame by the wrapper (the library's binding allocates
its own small result array); the delay search allocates once a second while audio plays, and
moving a young output stream once.

Modes (`mode`): ``bypass`` nothing audible was played for `idle_after_s` (the microphone
passes untouched and the canceller is not called: no CPU, and a stale reference can never gate
the patient); ``converging`` playback started, ERLE not judged yet; ``active`` ERLE reached
`erle_threshold_db`; ``no_echo`` the reference plays but the microphone does not rise above its
noise floor (a muted speaker): the microphone passes untouched; ``failed`` after `judge_s` of
playback the echo is still there (ERLE below the threshold): the engine should gate the
microphone for the rest of the visit. ``failed`` holds until `reset()`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from kiosk.audio.aec_backend import make_backend, measure_lag
from kiosk.audio.delay import DelayEstimator
from kiosk.audio.timeline import Move, StreamTimeline

RATE_HZ = 24000
_SILENT_PEAK = 16  # int16 peak of a reference block that counts as "nothing played"
_WINDOW_S = 0.5  # ERLE is measured per window of this much far-end audio
_HEARD_DB = 10.0  # a window this far above the noise floor has echo in it (or the patient)
_AEC3_INITIAL_S = 3.0  # AEC3's initial state (2.5 s of far-end audio) and a window more
_TAIL_S = 0.35  # after the reference falls silent its echo can still be heard (RT60 0.3 s)
_LOCATE_S = 3.0  # far-end seconds past `judge_s` the delay search gets to find the echo
_JUDGE_WINDOWS = 4  # settled windows a verdict needs (one or two can mislead, measured)
_LEAD_S = 0.020  # the reference is kept this far ahead of the echo (see `_bulk`)


@dataclass(frozen=True)
class AecStats:
    """A snapshot for metrics and `voice-kiosk test-audio`."""

    mode: str
    erle_db: float | None
    delay_ms: float | None
    converged: bool | None
    far_active_s: float
    frames: int
    bypassed_frames: int


class EchoCanceller:
    """The kiosk's echo canceller; see the module doc for what the engine must feed it."""

    def __init__(self, rate_hz: int = RATE_HZ, frame_samples: int = 480, *,
                 idle_after_s: float = 1.0, judge_s: float = 3.0,
                 erle_threshold_db: float = 12.0, max_delay_ms: float = 800.0,
                 min_delay_ms: float = -100.0) -> None:
        if frame_samples % (rate_hz // 100):
            raise ValueError("frame_samples must be a multiple of 10 ms")
        self._ap = make_backend(rate_hz)
        self.lag_samples = measure_lag(rate_hz, frame_samples)
        """How far AEC3's output lags its input; the bypass path is delayed as much, so
        switching between them neither repeats nor drops audio."""
        self.rate_hz = rate_hz
        self.frame_samples = frame_samples
        self.idle_after_s = idle_after_s
        self.judge_s = judge_s
        self.erle_threshold_db = erle_threshold_db
        # Reference ring, addressed by absolute sample position on the monotonic clock
        # (position = time * rate): long enough for the delay search and any jitter.
        span_s = 2.0 + max(0.0, max_delay_ms) / 1000.0 + 2.0
        self._ring = np.zeros(1 << int(math.ceil(math.log2(span_s * rate_hz))), np.int16)
        self._mask = len(self._ring) - 1
        self._lock = threading.Lock()
        self._ref_audible_end = -(1 << 62)  # position after the newest audible block
        # Each side's blocks are placed by their time stamps (which jitter, and are early at
        # an output stream's start); a microphone frame already processed stays where it was.
        self._ref_line = StreamTimeline(rate_hz)
        self._mic_line = StreamTimeline(rate_hz)
        self._ref_frame = np.zeros(frame_samples, np.int16)
        self._out = np.zeros(frame_samples, np.int16)
        self._zeros = np.zeros(frame_samples, np.int16)
        self._lagline = np.zeros(self.lag_samples + frame_samples, np.int16)
        # The last 0.5 s of microphone while bypassed: AEC3 learns the room's noise from it
        # before the first echo (fed a fresh canceller, it makes ERLE ~10 dB better in the
        # first seconds of an answer; bench/AEC-EVALUATION.md).
        self._preroll = np.zeros((max(1, int(0.5 * rate_hz) // frame_samples), frame_samples),
                                 np.int16)
        self._preroll_n = 0
        self._fed = False  # AEC3 has been fed since the last bypass
        self._f64 = np.zeros(frame_samples, np.float64)
        # Samples the reference is shifted by (the tracked echo delay). It starts early by
        # `_LEAD_S`: AEC3 only models an echo that comes after its reference, and the
        # latencies PortAudio reports can be off by tens of ms (through PulseAudio the echo
        # was measured 2 ms *before* the stamped reference), while an echo later than
        # expected by that much costs AEC3 nothing.
        self._lead = int(_LEAD_S * rate_hz)
        self._bulk = -self._lead
        self._candidate: int | None = None  # a retrack waits for a second estimate to agree
        self._min_delay = int(min_delay_ms * rate_hz / 1000)
        self._max_delay = int(max_delay_ms * rate_hz / 1000)
        self._aec3_reach = int(0.250 * rate_hz)  # AEC3 finds delays up to ~500 ms itself
        self._delay = DelayEstimator(rate_hz, min_delay_ms=min_delay_ms,
                                     max_delay_ms=max_delay_ms)
        # The microphone's noise floor (see `_track_floor`): the room's, kept across visits.
        self._floor_db = 0.0
        self._floor_frames = 0
        self._life_far_frames = 0  # far-end frames AEC3 has processed since construction
        self.echo_expected = False
        """The last frame may hold echo: what played at its own time (as placed before any
        delay was tracked) was audible, or stopped less than the room's reverberation ago.
        Not at the tracked delay: until ERLE has proven it, a tracked delay can be a
        coincidence (seen on bench/process.py's rig, which has no echo at all: 760 ms,
        found on its synthetic voices and the chimes, which held the microphone shut for
        most of the patient's next question; the service heard nothing)."""
        # ERLE windows judge from this far-end frame on (AEC3's initial state, a retrack).
        self._settle_frames = int(math.ceil(_AEC3_INITIAL_S * rate_hz / frame_samples))
        self._settle_at = self._settle_frames
        self.reset()

    # -- life cycle ----------------------------------------------------------------------

    def reset(self) -> None:
        """A new visit: forget the verdict and the ERLE history (the room's echo path and
        the tracked delay are kept: they belong to the bedside, not the visit)."""
        self._mode = "bypass"
        self._failed = False
        self._far_frames = 0
        self._win_mic = self._win_out = 0.0
        self._win_frames = 0
        self._windows: list[tuple[float, float, bool]] = []  # (erle dB, mic dB, settled)
        self._erle: float | None = None
        self._converged: bool | None = None
        self._located = False  # the delay search found the echo in this visit
        self.frames = 0
        self.bypassed_frames = 0

    # -- render side ---------------------------------------------------------------------

    def push_reference(self, pcm: np.ndarray, dac_time: float) -> None:
        """Record what the speaker plays from `dac_time` on (any block length)."""
        n = len(pcm)
        if n == 0:
            return
        with self._lock:
            end = self._ref_line.end
            pos, move = self._ref_line.place(int(round(dac_time * self.rate_hz)), n)
            if move is not None:
                self._move(move)
            elif end is not None and pos > end:
                self._zero(end, min(pos, end + len(self._ring)))  # a gap: nothing played
            self._write(pos, pcm)
            if int(np.max(np.abs(pcm))) > _SILENT_PEAK:
                self._ref_audible_end = pos + n

    def _move(self, move: Move) -> None:
        """The young stream started `move.by` later (or earlier) than its first stamps said:
        what it played moves with it, and where it did not play is silence."""
        n = move.stop - move.start
        if not 0 < n <= len(self._ring) // 2:
            return
        held = np.zeros(n, np.int16)
        self._read(move.start, held)
        self._zero(min(move.start, move.start + move.by), max(move.stop, move.stop + move.by))
        self._write(move.start + move.by, held)
        if move.start <= self._ref_audible_end <= move.stop:
            self._ref_audible_end += move.by

    def _write(self, pos: int, pcm: np.ndarray) -> None:
        n = min(len(pcm), len(self._ring))
        i = pos & self._mask
        k = min(n, len(self._ring) - i)
        self._ring[i:i + k] = pcm[:k]
        self._ring[:n - k] = pcm[k:n]

    def _zero(self, start: int, stop: int) -> None:
        n = stop - start
        i = start & self._mask
        k = min(n, len(self._ring) - i)
        self._ring[i:i + k] = 0
        self._ring[:n - k] = 0

    def _read(self, pos: int, out: np.ndarray) -> None:
        """Reference samples [pos, pos+len(out)) into `out`; zeros where none was pushed."""
        n = len(out)
        end = self._ref_line.end
        out[:] = 0
        if end is None:
            return
        lo, hi = max(pos, end - len(self._ring) + 1), min(pos + n, end)
        if hi <= lo:
            return
        i = lo & self._mask
        k = min(hi - lo, len(self._ring) - i)
        out[lo - pos:lo - pos + k] = self._ring[i:i + k]
        out[lo - pos + k:hi - pos] = self._ring[:hi - lo - k]

    # -- capture side --------------------------------------------------------------------

    def process(self, mic: np.ndarray, adc_time: float) -> np.ndarray:
        """Clean one microphone frame captured from `adc_time` on; see the module doc."""
        n = self.frame_samples
        pos, _ = self._mic_line.place(int(round(adc_time * self.rate_hz)), n)
        self.frames += 1
        ref_pos = pos - self._bulk
        with self._lock:
            self._read(ref_pos, self._ref_frame)
            audible_end = self._ref_audible_end
        mic_db = self._energy_db(mic)
        idle = ref_pos - audible_end > self.idle_after_s * self.rate_hz
        self.echo_expected = pos + self._lead - audible_end < _TAIL_S * self.rate_hz
        if idle:
            self._track_floor(mic_db)
            self._mode = "failed" if self._failed else "bypass"
            self._fed = False
            rows = len(self._preroll)
            self._preroll[self._preroll_n % rows] = mic
            self._preroll_n += 1
            return self._bypass(mic)
        if not self._fed:
            self._warm_up()
        far_active = int(np.max(np.abs(self._ref_frame))) > _SILENT_PEAK
        self._delay.add(mic, self._ref_frame, far_active)
        if far_active and self._delay.ready():
            self._retrack()
        out = self._ap.process(mic, self._ref_frame)
        if far_active:
            self._measure(mic_db, self._energy_db(out))
        if self._mode == "no_echo":
            return self._bypass(mic)
        self._out[:] = out
        self._delay_line(mic)  # keep the bypass path's history current
        return self._out

    def _warm_up(self) -> None:
        """Leaving bypass: feed AEC3 the microphone's recent past with a silent reference."""
        rows = len(self._preroll)
        for i in range(max(0, self._preroll_n - rows), self._preroll_n):
            self._ap.process(self._preroll[i % rows], self._zeros)
        self._preroll_n = 0
        self._fed = True

    def _delay_line(self, mic: np.ndarray) -> np.ndarray:
        """`mic` delayed by `lag_samples` (what AEC3's output would be without echo)."""
        line, n = self._lagline, len(mic)
        line[:-n] = line[n:]
        line[-n:] = mic
        return line[:n]

    def _bypass(self, mic: np.ndarray) -> np.ndarray:
        self.bypassed_frames += 1
        self._out[:] = self._delay_line(mic)
        return self._out

    def _energy_db(self, x: np.ndarray) -> float:
        f = self._f64
        np.copyto(f, x, casting="unsafe")
        return 10.0 * math.log10(float(np.dot(f, f)) / len(f) + 1.0)

    def _track_floor(self, mic_db: float) -> None:
        """The microphone's noise floor while nothing plays: a slow average that follows
        quiet frames quickly and loud ones (the patient talking) hardly at all."""
        self._floor_frames += 1
        if self._floor_frames == 1 or mic_db < self._floor_db:
            self._floor_db += 0.2 * (mic_db - self._floor_db) if self._floor_frames > 1 \
                else mic_db - self._floor_db
        else:
            self._floor_db += 0.002 * (mic_db - self._floor_db)

    def _retrack(self) -> None:
        """Shift the reference so AEC3 sees the echo ~20 ms behind it, well inside the
        range it searches itself; small moves are left to AEC3 (a shift makes it re-adapt)."""
        delay = self._delay.take()
        if delay is None:
            return
        total = self._bulk + delay
        if not self._min_delay <= total <= self._max_delay:
            return  # outside the tracked range: leave it, ERLE will say it fails
        self._located = True
        if 0 <= delay <= self._aec3_reach:
            self._candidate = None
            return
        # A move makes AEC3 re-adapt: only on two estimates in a row that agree (to 2 ms).
        candidate, self._candidate = self._candidate, total
        if candidate is None or abs(candidate - total) > int(0.002 * self.rate_hz):
            return
        self._bulk = total - self._lead
        self._settle_at = self._life_far_frames + self._settle_frames
        self._candidate = None
        self._delay.clear()

    def _measure(self, mic_db: float, out_db: float) -> None:
        """Accumulate ERLE over far-end windows; judge after `judge_s` of playback."""
        self._far_frames += 1
        self._life_far_frames += 1
        self._win_mic += 10.0 ** (mic_db / 10.0)
        self._win_out += 10.0 ** (out_db / 10.0)
        self._win_frames += 1
        frame_s = self.frame_samples / self.rate_hz
        if self._win_frames * frame_s < _WINDOW_S:
            if self._mode == "bypass":
                self._mode = "failed" if self._failed else "converging"
            return
        erle = 10.0 * math.log10(self._win_mic / max(self._win_out, 1e-9))
        mic_level = 10.0 * math.log10(self._win_mic / self._win_frames)
        # AEC3 starts in an "initial state" (its first ~2.5 s of far-end audio) in which it
        # damps whatever the microphone hears while the reference plays: its ERLE looks
        # high even when the echo is not where it looks (measured on the echo rig: 38 dB
        # windows, then 9 dB, for an echo a second late). Those windows do not judge.
        # The same after the reference is shifted to a new delay (AEC3 re-adapts).
        self._windows.append((erle, mic_level,
                              self._life_far_frames - self._win_frames >= self._settle_at))
        self._win_mic = self._win_out = 0.0
        self._win_frames = 0
        keep = max(1, int(round(self.judge_s / _WINDOW_S)))
        del self._windows[:-keep]
        # Only windows in which the microphone hears more than its noise floor say how well
        # the echo is removed (AEC3 also damps the bare noise while the reference plays).
        # Double talk lowers a window's ERLE; the patient talks in a minority of windows,
        # so the median is the canceller's own figure.
        def heard(ws: list[tuple[float, float, bool]]) -> list[float]:
            return [w[0] for w in ws
                    if not self._floor_frames or w[1] - self._floor_db >= _HEARD_DB]

        settled = [w for w in self._windows if w[2]]
        self._erle = float(np.median(np.asarray(heard(settled) or heard(self._windows)
                                                or [w[0] for w in self._windows])))
        if self._far_frames * frame_s < self.judge_s or len(settled) < _JUDGE_WINDOWS:
            self._mode = "failed" if self._failed else "converging"
            return
        # Echo makes every far-end window louder than the floor; a patient talking over a
        # reference that is not heard (muted speaker) only some of them. Settled windows
        # only: an echo later than the tracked range (a second, on the echo rig) misses the
        # first windows, and taking it for "no echo" would let it through.
        echo_db = float(np.percentile([w[1] for w in settled], 25)) - self._floor_db
        if self._floor_frames and echo_db < 6.0:
            self._mode = "no_echo"  # the speaker plays, the microphone hears no more
            return
        if not self._located and self._far_frames * frame_s < self.judge_s + _LOCATE_S:
            # An echo the delay search has not found (yet) is not cancelled, whatever ERLE
            # says: AEC3 damps a misaligned echo by 10-30 dB in some windows and not in
            # others (measured on the echo rig, echo a second late). Give the search time.
            self._mode = "failed" if self._failed else "converging"
            return
        if self._erle >= self.erle_threshold_db and self._located and not self._failed:
            self._converged, self._mode = True, "active"
        else:
            self._converged, self._failed, self._mode = False, True, "failed"

    # -- what the engine and the metrics read --------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def erle_db(self) -> float | None:
        """ERLE over the last `judge_s` of far-end audio (median of the 0.5 s windows in
        which the microphone heard more than its noise floor)."""
        return self._erle

    @property
    def delay_ms(self) -> float | None:
        """The echo's delay behind the time-aligned reference (None until estimated)."""
        last = self._delay.last_delay
        return None if last is None else (self._bulk + last) * 1000.0 / self.rate_hz

    @property
    def converged(self) -> bool | None:
        """True/False once judged after `judge_s` of playback in this visit; else None."""
        return self._converged

    @property
    def failed(self) -> bool:
        """The engine should fall back to the echo gate for the rest of this visit."""
        return self._failed

    def stats(self) -> AecStats:
        return AecStats(self._mode, self._erle, self.delay_ms, self._converged,
                        self._far_frames * self.frame_samples / self.rate_hz, self.frames,
                        self.bypassed_frames)

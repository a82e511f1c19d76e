"""Echo scenes for measuring an echo canceller: what the kiosk plays, what its mic hears.

A scene is one timeline at 24 kHz: a second of quiet, an answer from the speaker (the
far end), the patient saying a short phrase in the middle of it (double talk), a pause, and
the patient speaking alone. The microphone hears the answer's echo through a `RoomModel`,
the patient, and background noise. The levels follow issue 14: the echo at the microphone as
loud as the patient's speech would be (0 dB echo-to-speech ratio), and the barge-in phrase
`near_below_echo_db` (6 dB) quieter than the echo.

Voices come from espeak-ng when it is installed (real speech: broadband, varying pitch, what
a canceller meets in practice) and otherwise from `kiosk.sim.voice` (harmonic, voice-like).

The metrics (`erle_windows`, `near_kept`) compare the canceller's output with the parts the
scene kept apart, which is why a scene carries the echo and the patient separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kiosk.sim.room import RATE_HZ, EchoPath, RoomModel, active_samples, rms_dbfs, scale_to_dbfs
from kiosk.sim.voice import spoken

ANSWER_TEXT = ("Your next dose of medicine is at four o'clock this afternoon. The nurse will "
               "bring it to you, and she will also check your blood pressure. If you need "
               "anything before then, press the button and ask me.")
PHRASE_TEXT = "Stop, please wait."


@dataclass
class EchoScene:
    """One measured timeline. Arrays are float32 at 24 kHz in int16 scale (clip to send)."""

    far: np.ndarray
    """What the kiosk played (the canceller's reference)."""
    echo: np.ndarray
    """What the microphone hears of it (room echo plus background noise)."""
    near: np.ndarray
    """What the patient says, as the microphone hears it."""
    room: RoomModel
    answer_start: int
    """Sample where the answer's first audio plays."""
    double_talk: slice
    """The patient's phrase over the answer."""
    near_alone: slice
    """The patient speaking with nothing playing."""
    far_only: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    """Mask: the answer is voiced and the patient is silent (where ERLE is measured)."""

    @property
    def mic(self) -> np.ndarray:
        return self.echo + self.near

    @staticmethod
    def int16(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def build_scene(room: RoomModel | None = None, *, far_dbfs: float = -20.0,
                near_below_echo_db: float = 6.0, lead_s: float = 1.0,
                double_talk_at_s: float = 6.0, pause_s: float = 1.5,
                answer: np.ndarray | None = None, phrase: np.ndarray | None = None,
                hot_reference: bool = False) -> EchoScene:
    """The standard scene (see the module doc).

    `far_dbfs` is the answer's speech level at the speaker; the echo's level follows from
    the room, and the patient is set `near_below_echo_db` below it. `hot_reference`: the
    kiosk "plays" (the reference has the answer) but the microphone hears no echo -- a
    muted or disconnected speaker, or a reference that is not what was played.
    """
    room = room or RoomModel()
    answer = spoken(ANSWER_TEXT) if answer is None else answer.astype(np.float32)
    phrase = (spoken(PHRASE_TEXT, voice="en-us+f3", speed=150, pitch=70,
                     fallback_f0_hz=140.0) if phrase is None else phrase.astype(np.float32))
    answer = scale_to_dbfs(answer, far_dbfs)
    lead, pause = int(lead_s * RATE_HZ), int(pause_s * RATE_HZ)
    n = lead + len(answer) + pause + len(phrase) + RATE_HZ // 2
    far = np.zeros(n, np.float32)
    far[lead:lead + len(answer)] = answer
    path = EchoPath(room)
    echo = path.apply(far)
    echo_level = rms_dbfs(echo[active_samples(echo)])
    if hot_reference:
        echo = path.apply(np.zeros_like(far))  # the room's noise only
        echo_level = rms_dbfs(path.apply(far)[active_samples(far)])
    said = scale_to_dbfs(phrase, echo_level - near_below_echo_db)
    near = np.zeros(n, np.float32)
    dt0 = lead + int(double_talk_at_s * RATE_HZ)
    dt0 = min(dt0, lead + len(answer) - len(said))
    near[dt0:dt0 + len(said)] = said
    alone0 = lead + len(answer) + pause
    near[alone0:alone0 + len(said)] = said
    far_voiced = active_samples(far)
    talking = np.zeros(n, bool)
    talking[dt0:dt0 + len(said) + room.delay_samples] = True
    return EchoScene(far=far, echo=echo, near=near, room=room, answer_start=lead,
                     double_talk=slice(dt0, dt0 + len(said)),
                     near_alone=slice(alone0, alone0 + len(said)),
                     far_only=far_voiced & ~talking)


def erle_windows(mic: np.ndarray, out: np.ndarray, mask: np.ndarray,
                 window_s: float = 0.25, min_cover: float = 0.6) -> list[tuple[float, float]]:
    """(start second, ERLE dB) for each window mostly inside `mask` (far end only).

    ERLE is the energy of what the microphone heard over what the canceller let through
    (echo plus noise in, residual out).
    """
    w = int(window_s * RATE_HZ)
    rows = []
    for s in range(0, len(mic) - w + 1, w):
        if mask[s:s + w].mean() < min_cover:
            continue
        m = mic[s:s + w].astype(np.float64)
        o = out[s:s + w].astype(np.float64)
        rows.append((s / RATE_HZ, 10.0 * math.log10(max(float(np.dot(m, m)), 1e-9)
                                                     / max(float(np.dot(o, o)), 1e-9))))
    return rows


def convergence_s(rows: list[tuple[float, float]], start_s: float, goal_db: float) -> float:
    """Seconds from `start_s` until every later ERLE window reaches `goal_db` (inf: never)."""
    last_bad = None
    for t, erle in rows:
        if t >= start_s and erle < goal_db:
            last_bad = t
    if last_bad is None:
        return max(0.0, next((t for t, _ in rows if t >= start_s), start_s) - start_s)
    later = [t for t, _ in rows if t > last_bad]
    return later[0] - start_s if later else math.inf


def output_lag(out: np.ndarray, near: np.ndarray, span: slice, max_lag: int = 720) -> int:
    """Samples by which the canceller's output lags its input (largest correlation with
    the clean near end over `span`; the canceller's own framing and filters delay it)."""
    n = near[span].astype(np.float64)
    size = 1 << int(math.ceil(math.log2(len(n) + 2 * max_lag)))
    seg = out[max(0, span.start - max_lag):span.stop + max_lag].astype(np.float64)
    pad = span.start - max(0, span.start - max_lag)
    xc = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(n, size)), size)
    lags = np.arange(-pad, max_lag + 1)
    values = xc[lags + pad]  # xc[k]: seg shifted by k against the phrase
    return int(lags[int(np.argmax(values))])


def near_kept(out: np.ndarray, near: np.ndarray, span: slice, lag: int) -> tuple[float, float]:
    """(correlation, gain dB) of the clean near end in the output over `span`.

    The correlation says how much of the output *is* the patient (1.0: only the patient);
    the gain how loud the patient's part is after the canceller (0 dB: untouched).
    """
    o = out[span.start + lag:span.stop + lag].astype(np.float64)
    n = near[span].astype(np.float64)
    nn = float(np.dot(n, n)) or 1e-9
    corr = float(np.dot(o, n)) / math.sqrt(max(float(np.dot(o, o)), 1e-9) * nn)
    proj = float(np.dot(o, n)) / nn  # the patient's amplitude in the output
    return corr, 20.0 * math.log10(max(abs(proj), 1e-6))

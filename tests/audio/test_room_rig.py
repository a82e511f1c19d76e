"""The echo room of the virtual rig, measured the way the kiosk would meet it.

A "kiosk side" plays noise bursts into the virtual speaker and records the virtual
microphone, both through PortAudio like the kiosk's own streams. Each callback's
PortAudio timestamps (DAC time of the first sample out, ADC time of the first sample in)
put both streams on one clock, so the delay from speaker to microphone is measured per burst:
it must be the configured delay plus a constant the rig adds, the same for every burst (no
drift), and the echo must be filtered and attenuated as configured. The patient's speech
(`say`) mixes in.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from kiosk.audio.devices import find_device, open_portaudio, open_stream
from kiosk.audio.room_rig import EchoRoom
from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE, VirtualAudio
from kiosk.sim.room import RoomModel, rms_dbfs
from tests.audio.helpers import dominant_hz, tone

pytestmark = [pytest.mark.audio, pytest.mark.slow]
RATE = 24000
BLOCK = 480
BURST_EVERY = RATE  # one burst a second
BURST = RATE // 5  # 200 ms of noise


@dataclass
class Loop:
    """Both kiosk-side streams: what was played and heard, with per-block timestamps."""

    signal: np.ndarray
    out_pos: int = 0
    out_times: list[tuple[int, float]] = field(default_factory=list)
    heard: list[bytes] = field(default_factory=list)
    in_times: list[tuple[int, float]] = field(default_factory=list)
    in_pos: int = 0
    enough: threading.Event = field(default_factory=threading.Event)

    def out_cb(self, _in: bytes | None, n: int, info: dict, _status: int
               ) -> tuple[bytes, int]:
        chunk = self.signal[self.out_pos:self.out_pos + n]
        chunk = np.pad(chunk, (0, n - len(chunk)))
        self.out_times.append((self.out_pos, float(info["output_buffer_dac_time"])))
        self.out_pos += n
        return chunk.astype("<i2").tobytes(), 0

    def in_cb(self, data: bytes | None, n: int, info: dict, _status: int
              ) -> tuple[None, int]:
        if data:
            self.heard.append(data)
            self.in_times.append((self.in_pos, float(info["input_buffer_adc_time"])))
            self.in_pos += n
            if self.in_pos >= len(self.signal) + RATE // 2:
                self.enough.set()
        return None, 0

    def recording(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.heard), np.int16).astype(np.float64)

    @staticmethod
    def origin(times: list[tuple[int, float]]) -> float:
        """The stream's time of sample 0 (median over callbacks: robust to jitter)."""
        return float(np.median([t - pos / RATE for pos, t in times[5:]]))


def play_and_hear(rig: VirtualAudio, signal: np.ndarray) -> Loop:
    loop = Loop(signal)
    pa = open_portaudio()
    streams = []
    try:
        mic = find_device(pa, MIC_DEVICE, "input")
        spk = find_device(pa, SPEAKER_DEVICE, "output")
        streams.append(open_stream(pa, mic, "input", RATE, 1, BLOCK, loop.in_cb))
        streams.append(open_stream(pa, spk, "output", RATE, 1, BLOCK, loop.out_cb))
        assert loop.enough.wait(len(signal) / RATE + 15), "the streams stopped"
    finally:
        for s in streams:
            s.stop_stream()
            s.close()
        pa.terminate()
    return loop


def bursts(count: int, seed: int = 5) -> np.ndarray:
    """`count` bursts of noise, one a second, the first after half a second."""
    rng = np.random.default_rng(seed)
    x = np.zeros(BURST_EVERY * (count + 1), np.float64)
    for s in burst_starts(count):
        x[s:s + BURST] = rng.normal(0, 6000, BURST)
    return np.clip(x, -32768, 32767).astype(np.int16)


def burst_starts(count: int) -> list[int]:
    return [BURST_EVERY // 2 + BURST_EVERY * i for i in range(count)]


def burst_delays(loop: Loop, max_delay_s: float = 0.5) -> list[float]:
    """Seconds from each burst leaving the speaker to its arrival at the microphone
    (GCC-PHAT peak: the room's direct path)."""
    rec, sig = loop.recording(), loop.signal.astype(np.float64)
    t_out, t_in = Loop.origin(loop.out_times), Loop.origin(loop.in_times)
    delays = []
    for s in burst_starts(len(sig) // BURST_EVERY - 1):
        burst = sig[s:s + BURST]
        j0 = int(round((t_out + s / RATE - t_in) * RATE))  # same instant, in the recording
        seg = rec[max(0, j0):j0 + BURST + int(max_delay_s * RATE)]
        if j0 < 0 or len(seg) < BURST:
            continue
        size = 1 << int(np.ceil(np.log2(len(seg) + BURST)))
        spec = np.fft.rfft(seg, size) * np.conj(np.fft.rfft(burst, size))
        cc = np.fft.irfft(spec / (np.abs(spec) + 1e-9), size)[:len(seg) - BURST]
        lag = int(np.argmax(cc))
        delays.append((j0 + lag) / RATE + t_in - (t_out + s / RATE))
    return delays


def room_delays(rig: VirtualAudio, delay_ms: float, count: int = 6) -> list[float]:
    with EchoRoom(rig, RoomModel(delay_ms=delay_ms, echo_gain_db=-6.0, noise_dbfs=-70)):
        return burst_delays(play_and_hear(rig, bursts(count)))


def steady(run: list[float]) -> bool:
    """Every burst equally late (usually to 0.05 ms): no drift, no wandering queue.
    PulseAudio may re-adjust a stream's buffer once (a single 2.5-5 ms step)."""
    steps = [abs(b - a) for a, b in zip(run[:-1], run[1:], strict=True) if abs(b - a) > 0.001]
    return len(run) >= 5 and len(steps) <= 1 and float(np.ptp(run)) < 0.0065


def steady_delays(rig: VirtualAudio, delay_ms: float, attempts: int = 3) -> list[float]:
    """A steady run of `room_delays`. The room is a user-space process feeding pipes: when
    the machine is saturated (seen with a qemu build on both cores) it misses blocks and
    the delay jumps. Such a run is measured again, at most `attempts` times in all; a rig
    that never holds steady fails."""
    runs = [room_delays(rig, delay_ms)]
    while not steady(runs[-1]) and len(runs) < attempts:
        runs.append(room_delays(rig, delay_ms))
    assert steady(runs[-1]), runs
    return runs[-1]


def test_delay_is_the_configured_one_plus_a_stable_constant(rig: VirtualAudio) -> None:
    short = steady_delays(rig, 30)
    long = steady_delays(rig, 130)
    const_short = float(np.median(short)) - 0.030
    const_long = float(np.median(long)) - 0.130
    print(f"room adds {const_short * 1000:.1f} / {const_long * 1000:.1f} ms beyond the "
          "configured delay (30 / 130 ms)")
    # Between runs the constant moves a little (the two streams' server-side buffers are
    # negotiated at each start). With the streams asking for 20 ms it was 73-80 ms here (34-41
    # ms at 10 ms, bench/AEC-EVALUATION.md's runs): the queue kept for pacat and the buffers.
    assert abs(const_long - const_short) < 0.015
    assert 0.0 <= const_short < 0.120


def test_echo_is_filtered_and_attenuated_and_the_patient_mixes_in(rig: VirtualAudio) -> None:
    room = RoomModel(delay_ms=50, echo_gain_db=-12.0, noise_dbfs=None)
    signal = np.concatenate([tone(1000, 1.5, amplitude=0.3), np.zeros(RATE, np.int16)])
    with EchoRoom(rig, room) as echo:
        patient = tone(300, 0.5, amplitude=0.1)
        echo.say(patient)
        loop = play_and_hear(rig, signal)
        assert echo.corrections == 0 and echo.error is None
    rec = loop.recording()
    d = int(round((Loop.origin(loop.out_times) - Loop.origin(loop.in_times)) * RATE))
    heard = rec[d + int(0.4 * RATE):d + int(1.4 * RATE)]  # steady state of the echoed tone
    assert dominant_hz(heard, RATE) == pytest.approx(1000, abs=5)
    # A steady sine through a unit-energy random room changes level by its response at
    # 1 kHz; the mean over the room is the configured gain: allow the room's ripple.
    level = rms_dbfs(heard) - rms_dbfs(signal[:int(1.4 * RATE)])
    assert -24.0 < level < -3.0, level
    # The echo keeps ringing after the tone stops (RT60 0.3 s) and then dies away.
    end = d + int(1.5 * RATE) + int(room.delay_ms * RATE / 1000)
    tail = rec[end + int(0.02 * RATE):end + int(0.08 * RATE)]
    later = rec[end + int(0.5 * RATE):end + int(0.7 * RATE)]
    assert rms_dbfs(tail) > rms_dbfs(later) + 20
    # The patient was mixed in at once: a 300 Hz tone near the recording's start.
    start = rec[:int(0.6 * RATE)]
    assert np.any(np.abs(start) > 1000)


def test_processes_are_stopped_by_pid(rig: VirtualAudio) -> None:
    echo = EchoRoom(rig, RoomModel()).start()
    pids = echo.pids
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    echo.stop()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(p) for p in pids)
    echo.stop()  # twice is harmless


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False

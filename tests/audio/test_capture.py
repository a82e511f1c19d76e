"""A tone fed into the virtual microphone comes out of the capture path as 24 kHz frames."""

from __future__ import annotations

import time

import numpy as np
import pyaudio
import pytest

from kiosk.audio.capture import Capture
from kiosk.audio.devices import find_device, open_portaudio
from kiosk.audio.virtual import JACK_DEVICE, MIC_DEVICE, VirtualAudio
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.settings import AudioSettings

from .helpers import dominant_hz, loud_part, rms_dbfs, tone

pytestmark = pytest.mark.audio


def collect(cap: Capture, seconds: float, timeout_s: float = 10.0) -> tuple[np.ndarray, list]:
    """Read frames until `seconds` of audio arrived (or the timeout)."""
    frames = []
    need = int(seconds * SAMPLE_RATE_HZ)
    deadline = time.monotonic() + timeout_s
    while sum(len(f.pcm) for f in frames) < need and time.monotonic() < deadline:
        f = cap.read_frame(timeout_s=0.5)
        if f is not None:
            frames.append(f)
    pcm = np.concatenate([f.pcm for f in frames]) if frames else np.zeros(0, np.int16)
    return pcm, frames


def capture_tone(rig: VirtualAudio, cap: Capture, freq_hz: float, rate_hz: int,
                 jack: bool = False) -> tuple[np.ndarray, list]:
    cap.arm()
    signal = tone(freq_hz, 1.0, rate_hz=rate_hz, amplitude=0.5)
    feed = (rig.play_into_jack_mic if jack else rig.play_into_mic)(signal, rate_hz)
    try:
        pcm, frames = collect(cap, 1.6)
        assert feed.wait(10), "the feeder did not finish"
    finally:
        feed.stop()
        cap.disarm()
    return pcm, frames


def check_tone(pcm: np.ndarray, frames: list, freq_hz: float, frame_ms: int) -> None:
    assert frames, "no frames captured"
    assert all(len(f.pcm) == SAMPLE_RATE_HZ * frame_ms // 1000 for f in frames)
    assert all(f.pcm.dtype == np.int16 for f in frames)
    stamps = [f.captured_at for f in frames]
    assert stamps == sorted(stamps)
    body = loud_part(pcm)
    assert len(body) > 0.5 * SAMPLE_RATE_HZ, "the tone did not arrive"
    assert dominant_hz(body, SAMPLE_RATE_HZ) == pytest.approx(freq_hz, abs=3)
    # Half of full scale is -9.03 dBFS RMS for a sine.
    assert rms_dbfs(body) == pytest.approx(-9.03, abs=1.0)


def test_tone_into_virtual_mic_arrives_at_24k_with_frequency_and_level(rig):
    pa = open_portaudio()
    cap = Capture(AudioSettings(frame_ms=20))
    try:
        cap.open(pa, find_device(pa, MIC_DEVICE, "input"))
        assert cap.device_rate_hz == 24000 and cap.channels == 1
        pcm, frames = capture_tone(rig, cap, 1000.0, 24000)
        check_tone(pcm, frames, 1000.0, 20)
        rms, peak = cap.level_dbfs
        assert peak <= 0.0
    finally:
        cap.close()
        pa.terminate()


def test_stereo_device_is_downmixed_and_gain_applied(rig):
    pa = open_portaudio()
    cap = Capture(AudioSettings(frame_ms=10, input_gain_db=-6.0))
    try:
        cap.open(pa, find_device(pa, MIC_DEVICE, "input"), channels=2)
        assert cap.channels == 2
        pcm, frames = capture_tone(rig, cap, 700.0, 24000)
        assert frames and all(len(f.pcm) == 240 for f in frames)
        body = loud_part(pcm, threshold=500)
        assert dominant_hz(body, 24000) == pytest.approx(700.0, abs=3)
        assert rms_dbfs(body) == pytest.approx(-9.03 - 6.0, abs=1.0)
    finally:
        cap.close()
        pa.terminate()


def test_gate_closed_discards_audio(rig):
    pa = open_portaudio()
    cap = Capture(AudioSettings(frame_ms=20))
    try:
        cap.open(pa, find_device(pa, MIC_DEVICE, "input"))
        cap.arm()
        cap.set_gate(True)
        feed = rig.play_into_mic(tone(500, 0.5), 24000)
        assert feed.wait(10)
        assert cap.read_frame(timeout_s=0.3) is None
        cap.set_gate(False)
        assert cap.read_frame(timeout_s=5) is not None
    finally:
        cap.close()
        pa.terminate()


def test_gate_source_is_followed_while_armed(rig):
    """The engine drives the gate from `playback.busy`; the capture follows it callback by
    callback, whoever else calls set_gate (or nobody, while still connecting)."""
    pa = open_portaudio()
    cap = Capture(AudioSettings(frame_ms=20))
    speaker_busy = [True]
    cap.set_gate_source(lambda: speaker_busy[0])
    try:
        cap.open(pa, find_device(pa, MIC_DEVICE, "input"))
        cap.arm()
        assert rig.play_into_mic(tone(500, 0.5), 24000).wait(10)
        assert cap.read_frame(timeout_s=0.3) is None  # the speaker was busy: nothing kept
        speaker_busy[0] = False
        assert cap.read_frame(timeout_s=5) is not None
    finally:
        cap.close()
        pa.terminate()


@pytest.fixture(scope="module")
def jack_rig(rig):
    rig.start_jack(48000)
    yield rig
    rig.stop_jack()


def test_48k_only_device_is_resampled_to_24k(jack_rig):
    pa = open_portaudio()  # after jackd: PortAudio looks for JACK at start-up only
    cap = Capture(AudioSettings(frame_ms=20))
    try:
        dev = find_device(pa, JACK_DEVICE, "input")
        assert dev.host_api.startswith("JACK")
        cap.open(pa, dev)
        assert cap.device_rate_hz == 48000, "the JACK dummy device must refuse 24 kHz"
        pcm, frames = capture_tone(jack_rig, cap, 1000.0, 48000, jack=True)
        check_tone(pcm, frames, 1000.0, 20)
    finally:
        cap.close()
        pa.terminate()


def test_full_backlog_drops_oldest_and_counts(rig):
    """Driven directly: a stalled reader loses the oldest audio, counted, newest kept."""
    cap = Capture(AudioSettings(frame_ms=20, capture_buffer_s=1))
    cap.prepare(24000, 1)
    cap.arm()
    block = (np.arange(480) % 100).astype(np.int16)
    for i in range(75):  # 1.5 s into a 1 s backlog
        cap.callback((block + i).tobytes(), 480, {}, 0)
    assert cap.dropped_samples == 12000 and cap.overruns == 25
    first = cap.read_frame(timeout_s=1)
    assert first is not None and first.pcm[0] == 25  # block 25 is the oldest one kept
    cap.arm()  # a new session: the backlog and its per-session counter start again
    assert cap.dropped_samples == 0 and cap.overruns == 25  # the total stays for metrics
    assert cap.read_frame(timeout_s=0.05) is None


def test_level_meter_reads_the_latest_block_after_downmix_and_gain():
    """Driven directly: the meter runs before any press (IT staff check a microphone with it)."""
    cap = Capture(AudioSettings(frame_ms=20, input_gain_db=-6.0))
    cap.prepare(24000, 2)
    assert cap.level_dbfs == (-120.0, -120.0)
    mono = tone(1000, 0.02, amplitude=0.5)  # exactly 20 periods: RMS is exact
    cap.callback(np.repeat(mono, 2).tobytes(), 480, {}, 0)  # left = right
    rms, peak = cap.level_dbfs
    assert peak == pytest.approx(-6.02 - 6.0, abs=0.1)
    assert rms == pytest.approx(-9.03 - 6.0, abs=0.1)
    cap.callback(bytes(480 * 2 * 2), 480, {}, 0)
    assert cap.level_dbfs == (-120.0, -120.0)


@pytest.mark.parametrize("rate", [48000, 44100, 16000])
def test_resampled_frame_leaves_with_the_block_that_completes_it(rate):
    """Driven directly, one device block per frame as PortAudio is asked to deliver: every
    block yields its frame at once (none waits for the next block), dated by the filter's
    real hold-back (about 5 ms at 48 kHz), with the tone's frequency and level intact."""
    cap = Capture(AudioSettings(frame_ms=20))
    cap.prepare(rate, 1)
    cap.arm()
    block = cap.block_samples
    assert block == rate // 50
    signal = tone(1000, 1.0, rate_hz=rate, amplitude=0.5)
    frames, ages = [], []
    for i in range(0, len(signal) - block + 1, block):
        before = time.monotonic()
        cap.callback(signal[i:i + block].tobytes(), block, {}, 0)
        after = time.monotonic()
        frame = cap.read_frame(0.0)
        assert frame is not None, f"block {i // block} did not complete its frame"
        assert cap.read_frame(0.0) is None
        frames.append(frame)
        ages.append((before - frame.captured_at, after - frame.captured_at))
    pcm = np.concatenate([f.pcm for f in frames])
    assert all(len(f.pcm) == 480 for f in frames)
    body = pcm[2400:]
    assert dominant_hz(body, SAMPLE_RATE_HZ) == pytest.approx(1000.0, abs=2)
    assert rms_dbfs(body) == pytest.approx(-9.03, abs=0.3)
    held_ms = [(lo * 1000, hi * 1000) for lo, hi in ages[1:]]
    # Dated older than its block by what the filter holds (never as if brand new), and never
    # by a whole frame or more (a frame that had waited for a later block).
    assert all(lo <= 16.0 and hi >= 2.0 for lo, hi in held_ms), held_ms[:3]


def test_every_frame_passes_through_the_echo_control_and_arm_starts_a_visit(rig):
    """With echo_mode aec and nothing playing, the canceller sees every frame (bypassed: the
    tone comes out whole, delayed by the canceller's own lag) and arm() resets its verdict."""
    from kiosk.audio.echo import EchoControl

    settings = AudioSettings(echo_mode="aec")  # and the default 100 ms frames
    echo = EchoControl(settings, lambda: False)
    if echo.canceller is None:
        pytest.skip("pywebrtc-audio is not installed")
    pa = open_portaudio()
    cap = Capture(settings)
    cap.set_echo(echo)
    try:
        cap.open(pa, find_device(pa, MIC_DEVICE, "input"))
        pcm, frames = capture_tone(rig, cap, 440, 24000)
        check_tone(pcm, frames, 440, 100)
        stats = echo.stats().aec
        assert stats is not None and stats.frames == len(frames)
        assert stats.bypassed_frames == len(frames) and stats.mode == "bypass"
        cap.arm()  # the next visit
        assert echo.stats().aec.frames == 0  # type: ignore[union-attr]
        cap.disarm()
    finally:
        cap.close()
        pa.terminate()


class MuteEveryOther:
    """A frame cleaner that mutes every second frame, as the canceller mutes what may hold
    echo before it has converged."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def clean(self, frame, input_latency_s):
        self.seen.append(frame.captured_at)
        return frame if len(self.seen) % 2 else None

    def new_visit(self) -> None:
        self.seen.clear()


def test_a_frame_the_echo_control_mutes_is_skipped_not_sent_as_silence(rig):
    """read_frame moves on past a muted frame within its timeout: the caller gets the next
    kept frame, never a gap of zeros and never None while frames are still coming."""
    settings = AudioSettings()  # 100 ms frames
    cleaner = MuteEveryOther()
    pa = open_portaudio()
    cap = Capture(settings)
    cap.set_echo(cleaner)
    try:
        cap.open(pa, find_device(pa, MIC_DEVICE, "input"))
        cap.arm()
        feed = rig.play_into_mic(tone(440, 1.5, rate_hz=24000, amplitude=0.5), 24000)
        try:
            kept = [cap.read_frame(timeout_s=2.0) for _ in range(5)]
        finally:
            feed.stop()
            cap.disarm()
        assert all(f is not None for f in kept)
        assert [f.captured_at for f in kept] == cleaner.seen[0::2][:5]
        assert len(cleaner.seen) == 9  # the fifth kept frame is the ninth seen
    finally:
        cap.close()
        pa.terminate()


def test_reopening_on_the_same_portaudio_does_not_ask_the_device_again(rig, monkeypatch):
    """PyAudio holds the GIL while it asks a device for a format: a reopening during an
    answer must not (the speaker's callback would wait), a new PortAudio must."""
    pa = open_portaudio()
    cap = Capture(AudioSettings(frame_ms=20))
    asked: list[int] = []
    try:
        dev = find_device(pa, MIC_DEVICE, "input")
        cap.open(pa, dev)
        cap.pause()
        real = pyaudio.PyAudio.is_format_supported
        monkeypatch.setattr(pyaudio.PyAudio, "is_format_supported",
                            lambda self, *a, **k: asked.append(1) or real(self, *a, **k))
        cap.resume(pa, dev)
        assert cap.is_open and asked == []
        pcm, frames = capture_tone(rig, cap, 1000.0, 24000)
        check_tone(pcm, frames, 1000.0, 20)
        cap.pause()
        pa2 = open_portaudio()
        try:
            cap.resume(pa2, find_device(pa2, MIC_DEVICE, "input"))
            assert cap.is_open and asked  # another PortAudio: the format is checked again
        finally:
            cap.close()
            pa2.terminate()
    finally:
        cap.close()
        pa.terminate()

"""The echo canceller wrapper on the synthetic echo scene (no sound server needed).

The scene is issue 14's: an answer through a room (delay, RT60 0.3 s, attenuation, noise),
the patient 6 dB below the echo over the answer and then alone. Frames go in as the engine
would feed them: the reference from "playback" blocks with their DAC time, the microphone
with its ADC time, both on the monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("pywebrtc_audio")

from kiosk.audio.aec import EchoCanceller  # noqa: E402
from kiosk.audio.delay import DelayEstimator  # noqa: E402
from kiosk.sim.echo_scene import (  # noqa: E402
    EchoScene,
    build_scene,
    erle_windows,
    near_kept,
)
from kiosk.sim.room import RATE_HZ, RoomModel  # noqa: E402

FRAME = 480  # the kiosk's 20 ms frame


@dataclass
class Run:
    scene: EchoScene
    aec: EchoCanceller
    out: np.ndarray
    modes: list[str]
    expected: list[bool]  # echo_expected after each frame


def run(scene: EchoScene, *, block: int = 480, ahead_s: float = 0.04,
        jitter_s: float = 0.0, reference: np.ndarray | None = None,
        first_early_s: float = 0.0) -> Run:
    """Feed a scene like the engine: playback blocks of `block` samples pushed `ahead_s`
    before they play (the output latency), microphone frames as they are captured; both
    timestamps may jitter by up to `jitter_s` (PortAudio's clocks do), and the first three
    playback blocks may be stamped `first_early_s` early (PortAudio's prefill callbacks)."""
    aec = EchoCanceller()
    mic = scene.int16(scene.mic)
    far = scene.int16(scene.far if reference is None else reference)
    rng = np.random.default_rng(1)
    t0 = 1000.0
    out = np.zeros(len(mic), np.int16)
    modes, expected = [], []
    pushed = 0
    for i in range(0, len(mic) - FRAME + 1, FRAME):
        now = t0 + (i + FRAME) / RATE_HZ  # the frame has just been captured
        while pushed < len(far) and t0 + pushed / RATE_HZ <= now + ahead_s:
            dac = t0 + pushed / RATE_HZ + rng.uniform(-jitter_s, jitter_s)
            if pushed < 3 * block:
                dac -= first_early_s
            aec.push_reference(far[pushed:pushed + block], dac)
            pushed += block
        adc = t0 + i / RATE_HZ + rng.uniform(-jitter_s, jitter_s)
        out[i:i + FRAME] = aec.process(mic[i:i + FRAME], adc)
        modes.append(aec.mode)
        expected.append(aec.echo_expected)
    return Run(scene, aec, out, modes, expected)


@pytest.fixture(scope="module")
def normal() -> Run:
    return run(build_scene(RoomModel(delay_ms=80)), block=960, jitter_s=0.003)


def test_erle_goal_within_two_seconds(normal: Run) -> None:
    sc = normal.scene
    rows = erle_windows(sc.mic, normal.out, sc.far_only)
    start = sc.answer_start / RATE_HZ
    late = [erle for t, erle in rows if t >= start + 2.0]
    assert len(late) > 10
    assert min(late) >= 20.0 and np.median(late) >= 25.0, rows
    assert normal.aec.converged is True
    assert normal.aec.erle_db is not None and normal.aec.erle_db >= 25.0


def test_delay_estimate_and_modes(normal: Run) -> None:
    # Each stream is anchored on its first timestamp (+-3 ms jitter here), then counted.
    assert normal.aec.delay_ms == pytest.approx(80.0, abs=7.0)
    assert normal.modes[0] == "bypass"  # nothing played yet
    assert "converging" in normal.modes and "active" in normal.modes
    assert normal.modes[-1] == "bypass"  # the answer is over
    assert not normal.aec.failed


def test_double_talk_passes_the_patient(normal: Run) -> None:
    sc, lag = normal.scene, normal.aec.lag_samples
    corr, gain = near_kept(normal.out, sc.near, sc.double_talk, lag)
    assert corr >= 0.4 and gain >= -15.0, (corr, gain)
    corr, gain = near_kept(normal.out, sc.near, sc.near_alone, lag)
    assert corr >= 0.99 and abs(gain) < 0.5, (corr, gain)


def test_bypass_when_idle_is_the_microphone_delayed() -> None:
    aec = EchoCanceller()
    rng = np.random.default_rng(2)
    mic = rng.normal(0, 1000, FRAME * 20).astype(np.int16)
    out = np.concatenate([aec.process(mic[i:i + FRAME], 5.0 + i / RATE_HZ).copy()
                          for i in range(0, len(mic), FRAME)])
    lag = aec.lag_samples
    assert np.array_equal(out[lag:], mic[:len(mic) - lag])
    assert aec.mode == "bypass" and aec.stats().bypassed_frames == 20
    # A silent reference (the idle speaker's callback) keeps it bypassed.
    aec.push_reference(np.zeros(FRAME * 10, np.int16), 5.0 + len(mic) / RATE_HZ)
    aec.process(mic[:FRAME], 5.0 + len(mic) / RATE_HZ)
    assert aec.mode == "bypass"


def test_an_output_stream_stamped_early_at_its_start_keeps_the_true_delay() -> None:
    # Through PulseAudio a new output stream's first three blocks were stamped 3-48 ms early.
    # Anchored on them (and up to 10 ms still taken for the same stream), the reference stayed
    # that much early for the stream's life: the echo's delay moved from stream to stream.
    for early_s in (0.007, 0.040):
        r = run(build_scene(RoomModel(delay_ms=80)), first_early_s=early_s)
        assert r.aec.delay_ms == pytest.approx(80.0, abs=1.0), early_s
        assert r.aec.converged is True


def test_misaligned_reference_is_reported_as_failed() -> None:
    # The echo 2 s behind the reference: far outside the tracked range (-0.1 .. 0.8 s).
    r = run(build_scene(RoomModel(delay_ms=2000)))
    assert r.aec.converged is False and r.aec.failed
    assert r.modes[-1] == "failed"  # latched for the visit, bypass or not
    assert r.aec.erle_db is not None and r.aec.erle_db < r.aec.erle_threshold_db
    r.aec.reset()
    assert not r.aec.failed and r.aec.converged is None


def test_delay_outside_aec3_reach_is_tracked() -> None:
    # 400 ms: beyond what AEC3 follows comfortably; the wrapper shifts the reference.
    r = run(build_scene(RoomModel(delay_ms=400)))
    assert r.aec.delay_ms == pytest.approx(400.0, abs=3.0)
    assert r.aec.converged is True


def test_echo_is_expected_after_playback_by_the_speakers_own_time_not_a_tracked_delay():
    """Until the canceller has converged once, the kiosk mutes what may hold echo; how long
    after the answer that lasts must not hang on a tracked delay that ERLE has not proven
    (on a rig without echo a coincidence was tracked at 760 ms, and the patient's next
    question was muted). Here the delay is real, 400 ms, and tracked; echo is expected for
    the room's reverberation (0.35 s) after the reference's own end, less its 20 ms lead
    (and to the next 20 ms frame)."""
    r = run(build_scene(RoomModel(delay_ms=400)))
    assert r.aec.delay_ms == pytest.approx(400.0, abs=3.0)
    far = r.scene.int16(r.scene.far)
    end = int(np.nonzero(np.abs(far) > 64)[0][-1]) + 1  # the answer's last audible sample
    after = [i * FRAME for i, e in enumerate(r.expected) if i * FRAME >= end and not e]
    assert after, "echo expected to the end of the scene"
    assert 0.31 <= (after[0] - end) / RATE_HZ <= 0.37, (after[0] - end) / RATE_HZ


def test_hot_reference_without_echo_leaves_the_patient_alone() -> None:
    # The kiosk "plays" but the microphone hears no echo (muted speaker): AEC3 alone would
    # suppress the patient by ~20 dB (bench/AEC-EVALUATION.md); the wrapper passes the mic.
    r = run(build_scene(RoomModel(delay_ms=80), hot_reference=True))
    corr, gain = near_kept(r.out, r.scene.near, r.scene.double_talk, r.aec.lag_samples)
    assert corr >= 0.95 and gain > -1.0, (corr, gain)
    assert "no_echo" in r.modes and not r.aec.failed


def test_frame_size_must_be_whole_10ms() -> None:
    with pytest.raises(ValueError):
        EchoCanceller(frame_samples=500)


@pytest.mark.parametrize("delay_ms", [30, 150, 600])
def test_delay_estimator_finds_the_echo(delay_ms: int) -> None:
    est = DelayEstimator(RATE_HZ, max_delay_ms=800)
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 3000, RATE_HZ * 4)
    d = delay_ms * RATE_HZ // 1000
    mic = np.concatenate([np.zeros(d), ref[:-d]]) * 0.3 + rng.normal(0, 30, len(ref))
    got = None
    for i in range(0, len(ref), FRAME):
        est.add(mic[i:i + FRAME], ref[i:i + FRAME])
        if est.ready():
            got = est.take() if got is None else got
    assert got is not None and abs(got - d) <= est.decim


def test_delay_estimator_says_nothing_without_echo() -> None:
    est = DelayEstimator(RATE_HZ)
    rng = np.random.default_rng(4)
    for _ in range(200):
        est.add(rng.normal(0, 300, FRAME), rng.normal(0, 3000, FRAME))
        if est.ready():
            assert est.take() is None


def test_an_echo_a_second_late_is_never_taken_for_converged() -> None:
    # Just beyond the tracked range: AEC3's first seconds damp everything (its ERLE looks
    # high) and the echo misses the first windows; neither may pass for a working canceller.
    r = run(build_scene(RoomModel(delay_ms=1000)))
    assert "active" not in r.modes and "no_echo" not in r.modes
    assert r.aec.failed and r.modes[-1] == "failed"

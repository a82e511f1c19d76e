"""`kiosk.audio.echo.EchoControl`: the one owner of the echo mode, fed like the engine feeds it
(playback blocks with their DAC time, microphone frames with their capture time) on the
synthetic echo scene; no sound server needed."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kiosk.audio.aec import EchoCanceller
from kiosk.audio.aec_backend import AecUnavailable
from kiosk.audio.echo import EchoControl
from kiosk.ports import Frame
from kiosk.settings import AudioSettings
from kiosk.sim.echo_scene import build_scene
from kiosk.sim.room import RATE_HZ, RoomModel

FRAME = 2400  # the default 100 ms frame


class Speaker:
    """What `playback.busy` says: true while the scene's reference is audible."""

    def __init__(self) -> None:
        self.busy = False


def feed(echo: EchoControl, speaker: Speaker, scene, start: float = 1000.0
         ) -> tuple[np.ndarray, list[str]]:
    """The scene through `echo` as the engine would run it; (output, canceller modes)."""
    mic, far = scene.int16(scene.mic), scene.int16(scene.far)
    out = np.zeros(len(mic), np.int16)
    modes = []
    feed.busy = []  # type: ignore[attr-defined]
    feed.dropped = []  # type: ignore[attr-defined]
    for i in range(0, len(mic) - FRAME + 1, FRAME):
        block = far[i:i + FRAME]
        echo.reference(block, start + i / RATE_HZ)  # pushed as it is rendered
        speaker.busy = bool(np.abs(block).max() > 16)
        frame = Frame(mic[i:i + FRAME], start + (i + FRAME) / RATE_HZ)
        cleaned = echo.clean(frame, 0.0)
        if cleaned is not None:  # None: muted, dropped (its stretch of `out` stays zero)
            out[i:i + FRAME] = cleaned.pcm
        feed.dropped.append(cleaned is None)  # type: ignore[attr-defined]
        modes.append(echo.canceller.mode if echo.canceller else "")
        feed.busy.append(speaker.busy)  # type: ignore[attr-defined]
    return out, modes


def test_gate_and_none_leave_frames_alone_and_the_gate_follows_the_speaker():
    speaker = Speaker()
    gate = EchoControl(AudioSettings(echo_mode="gate"), lambda: speaker.busy)
    none = EchoControl(AudioSettings(echo_mode="none"), lambda: speaker.busy)
    frame = Frame(np.arange(FRAME, dtype=np.int16), 5.0)
    assert gate.clean(frame, 0.01) is frame and none.clean(frame, 0.01) is frame
    assert not gate.gate_closed()
    speaker.busy = True
    assert gate.gate_closed() and not none.gate_closed()
    assert not gate.wants_reference and not none.wants_reference
    stats = gate.stats()
    assert (stats.configured, stats.effective, stats.aec, stats.fallbacks) == \
        ("gate", "gate", None, 0)
    assert none.stats().effective == "none"


def test_aec_without_the_library_uses_the_gate_and_says_so(caplog):
    def missing(n: int) -> EchoCanceller:
        raise AecUnavailable("echo cancellation needs the pywebrtc-audio package")

    with caplog.at_level(logging.WARNING):
        echo = EchoControl(AudioSettings(echo_mode="aec"), lambda: True, canceller=missing)
    assert echo.effective == "gate" and echo.gate_closed()
    assert echo.stats() .configured == "aec"
    assert "pywebrtc-audio" in caplog.text and "echo gate" in caplog.text


@pytest.mark.skipif(not EchoControl(AudioSettings(echo_mode="aec"), lambda: False).canceller,
                    reason="pywebrtc-audio is not installed")
class TestWithTheCanceller:
    def test_muted_until_proven_then_the_echo_is_removed(self, caplog):
        speaker = Speaker()
        echo = EchoControl(AudioSettings(echo_mode="aec"), lambda: speaker.busy)
        scene = build_scene(RoomModel(delay_ms=80))
        with caplog.at_level(logging.INFO):
            out, modes = feed(echo, speaker, scene)
        said = [r.getMessage() for r in caplog.records if "converged" in r.getMessage()]
        assert len(said) == 1 and "interrupt an answer by voice" in said[0], said
        first_active = modes.index("active")
        converging = [i for i, m in enumerate(modes[:first_active])
                      if m == "converging" and feed.busy[i]]  # type: ignore[attr-defined]
        # Muted while it speaks and learns: dropped, as the gate drops, never sent as
        # digital silence (a voice detector would take that for the end of a turn).
        dropped = feed.dropped  # type: ignore[attr-defined]
        assert converging and all(dropped[i] for i in converging)
        assert not any(dropped[first_active:])
        assert echo.proven and not echo.gate_closed()
        stats = echo.stats()
        assert stats.effective == "aec" and stats.aec is not None
        assert stats.aec.erle_db is not None and stats.aec.erle_db >= 25.0
        assert stats.fallbacks == 0
        # A second answer in a new visit: proven once, it is not muted while re-judged.
        echo.new_visit()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            out2, modes2 = feed(echo, speaker, scene, start=2000.0)
        assert "converged" not in caplog.text  # said once after start, not every visit
        conv = [i for i, m in enumerate(modes2) if m == "converging"]
        assert conv and any(out2[i * FRAME:(i + 1) * FRAME].any() for i in conv)

    def test_a_canceller_that_fails_falls_back_to_the_gate_once_per_visit(self, caplog):
        speaker = Speaker()
        echo = EchoControl(AudioSettings(echo_mode="aec"), lambda: speaker.busy)
        scene = build_scene(RoomModel(delay_ms=1000))  # beyond the tracked 800 ms
        with caplog.at_level(logging.WARNING):
            _, modes = feed(echo, speaker, scene)
        assert "active" not in modes and modes[-1] == "failed"
        assert caplog.text.count("did not converge") == 1
        assert "audio.echo_mode: gate" in caplog.text
        assert echo.stats().fallbacks == 1
        speaker.busy = True
        assert echo.gate_closed()  # the gate holds the microphone while the kiosk speaks
        speaker.busy = False
        assert not echo.gate_closed()
        echo.new_visit()  # the next visit judges again, and counts again
        assert not echo.gate_closed() or not speaker.busy
        feed(echo, speaker, scene, start=2000.0)
        assert echo.stats().fallbacks == 2

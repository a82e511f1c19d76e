"""What a test call's visit uses instead of the patient's parts: the question instead of the
microphone, the answer at the test call's volume, and a gateway that notes when the grant came.

Everything else is the visit's own code: the same grant request, the same link, the same
uplink (which reads these frames exactly as it reads the microphone's), the same turns and
the same speaker path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from kiosk.audio.playback import volume_gain
from kiosk.ports import SAMPLE_RATE_HZ, CapturePort, Frame, PlaybackPort
from kiosk.session.gateway import GatewayClient, Grant


class QuestionCapture:
    """`CapturePort` playing the question, then silence, at the pace of a microphone: a frame
    is readable once its time has come after `arm()`, and `wake` (the uplink's "frames ready")
    is called every frame. Runs on the conversation's loop (its timer is a loop timer)."""

    def __init__(self, question: np.ndarray, frame_ms: int, wake: Callable[[], None]) -> None:
        self._question = question
        self._samples = SAMPLE_RATE_HZ * frame_ms // 1000
        self._frame_s = frame_ms / 1000
        self._silence = np.zeros(self._samples, np.int16)
        self._wake = wake
        self._armed_at: float | None = None
        self._taken = 0  # frames handed out since arm()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def question_s(self) -> float:
        return len(self._question) / SAMPLE_RATE_HZ

    def arm(self) -> None:
        self._armed_at = time.monotonic()
        self._taken = 0
        self._tick_later()

    def disarm(self) -> None:
        self._armed_at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def read_frame(self, timeout_s: float) -> Frame | None:
        """The next frame whose time has come, else None at once (the uplink reads with 0)."""
        if self._armed_at is None:
            return None
        if self._taken >= int((time.monotonic() - self._armed_at) / self._frame_s):
            return None
        i, self._taken = self._taken, self._taken + 1
        pcm = self._question[i * self._samples:(i + 1) * self._samples]
        if len(pcm) < self._samples:
            pcm = self._silence if not len(pcm) else np.concatenate(
                [pcm, self._silence[:self._samples - len(pcm)]])
        return Frame(pcm, self._armed_at + (i + 1) * self._frame_s)

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Unused: `wake`, given at construction, is the conversation's listener."""

    @property
    def dropped_samples(self) -> int:
        return 0

    def _tick_later(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._frame_s, self._tick)

    def _tick(self) -> None:
        if self._armed_at is not None:
            self._wake()
            self._tick_later()


class QuietPlayback:
    """`PlaybackPort` playing a test call's answer through the kiosk's real speaker path at
    `test_call.volume`: a fraction of `audio.volume`, never more; 0 plays silence."""

    def __init__(self, playback: PlaybackPort, volume: int, answer_volume: int) -> None:
        self._playback = playback
        full = volume_gain(answer_volume)
        self._factor = min(1.0, volume_gain(volume) / full) if full > 0 else 0.0
        self.written = False  # has the test call's answer reached the speaker path at all

    def set_listener(self, listener: Callable[[str, str], None] | None) -> None:
        """Unused: the conversation already listens to the speaker."""

    def write(self, item_id: str, pcm: bytes) -> None:
        self.written = True
        if self._factor == 0.0:
            pcm = bytes(len(pcm))
        elif self._factor < 1.0:
            samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) * self._factor
            pcm = samples.astype(np.int16).tobytes()
        self._playback.write(item_id, pcm)

    def end_item(self, item_id: str) -> None:
        self._playback.end_item(item_id)

    def flush(self, keep_cue: bool = True) -> int:
        """Drop the test call's answer, and only that: a cue already playing (the chime of the
        press that ends the test call) plays on."""
        return self._playback.flush(keep_cue=True) if self.written else 0

    def played_ms(self, item_id: str) -> int:
        return self._playback.played_ms(item_id)

    @property
    def busy(self) -> bool:
        return self.written and self._playback.busy


class TestAudio:
    """`AudioPort` of a test call's visit."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, capture: CapturePort, playback: PlaybackPort,
                 alive: Callable[[], bool]) -> None:
        self.capture = capture
        self.playback = playback
        self._alive = alive

    def alive(self) -> bool:
        return self._alive()


class TimedGateway:
    """The kiosk's gateway client, noting when each grant arrives (on the request's thread:
    `on_grant` must only post)."""

    def __init__(self, gateway: GatewayClient, on_grant: Callable[[float], None]) -> None:
        self._gateway = gateway
        self._on_grant = on_grant

    def create_grant(self, *args: Any, **kwargs: Any) -> Grant:
        grant = self._gateway.create_grant(*args, **kwargs)
        self._on_grant(time.monotonic())
        return grant

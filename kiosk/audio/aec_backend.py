"""The WebRTC audio processing library behind `kiosk.audio.aec`: creating its echo canceller
(AEC3, from pywebrtc-audio: a runtime dependency where it has wheels, x86_64 and
aarch64) and measuring the lag its framing adds."""

from __future__ import annotations

from typing import Any

import numpy as np


class AecUnavailable(RuntimeError):
    """The WebRTC library is not installed (the engine keeps the echo gate)."""


def make_backend(rate_hz: int) -> Any:
    """A fresh AEC3 instance at `rate_hz`; AecUnavailable without the library."""
    try:
        from pywebrtc_audio import AudioProcessor
    except ImportError as exc:
        raise AecUnavailable("echo cancellation needs the pywebrtc-audio package "
                             "(pip install pywebrtc-audio)") from exc
    return AudioProcessor(sample_rate=rate_hz, echo_cancellation=True)


def measure_lag(rate_hz: int, frame_samples: int) -> int:
    """Samples by which a fresh canceller's output lags its input (silent reference): the
    peak of the cross-correlation of 0.3 s of noise in and out, on a throwaway instance."""
    ap = make_backend(rate_hz)
    frames = max(1, int(0.3 * rate_hz) // frame_samples)
    noise = np.random.default_rng(0).normal(0, 3000, frames * frame_samples)
    x = np.clip(noise, -32768, 32767).astype(np.int16)
    zeros = np.zeros(frame_samples, np.int16)
    y = np.concatenate([ap.process(x[i:i + frame_samples], zeros)
                        for i in range(0, len(x), frame_samples)]).astype(np.float64)
    max_lag = min(len(x) // 2, rate_hz // 20)
    xs = x.astype(np.float64)
    scores = [float(np.dot(xs[:len(xs) - k], y[k:])) for k in range(max_lag)]
    return int(np.argmax(scores))

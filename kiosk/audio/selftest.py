"""`voice-kiosk test-audio`: play a cue, record three seconds, say what the microphone heard;
then, with `audio.echo_mode: aec`, check the echo canceller on this bedside's devices.

For IT staff at the bedside: run it, speak normally at the patient's distance, and read the
verdict; stay quiet during the echo check (a few seconds of a speech-like test sound). Nothing
is stored; the recording only lives in memory for the level figures.

Exit codes: 0 the microphone heard sound at a usable level; 1 it heard silence or clipping
(or too little audio arrived); 2 a device could not be found or opened. The echo check only
reports (a bedside whose canceller does not converge still works, with the echo gate).
"""

from __future__ import annotations

import time
from typing import TextIO

import numpy as np

from kiosk.audio.capture import Capture, dbfs
from kiosk.audio.cues import synthesize
from kiosk.audio.devices import AudioDeviceError, find_device, open_portaudio
from kiosk.audio.echo import EchoControl
from kiosk.audio.playback import Playback, volume_gain
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.settings import AudioSettings

RECORD_S = 3.0
SILENCE_PEAK_DBFS = -50.0  # quieter than this at its loudest: the mic is dead or muted
CLIP_FRACTION = 0.001  # more samples than this at full scale: the gain is too high
ECHO_CHECK_S = 12.0  # at most; the canceller judges itself after ~5 s of speech


def run_test_audio(settings: AudioSettings, out: TextIO, record_s: float = RECORD_S) -> int:
    """Run the audio self-test against the configured devices, writing a report to `out`."""
    pa = open_portaudio()
    capture = Capture(settings)
    playback = Playback(settings)
    echo = EchoControl(settings, lambda: playback.busy)
    if echo.wants_reference:
        playback.set_reference(echo.reference)
        capture.set_echo(echo)
    try:
        try:
            mic = find_device(pa, settings.input_device, "input")
            spk = find_device(pa, settings.output_device, "output")
            playback.open(pa, spk)
            capture.open(pa, mic)
        except AudioDeviceError as exc:
            print(f"FAIL: {exc}", file=out)
            return 2
        print(f"speaker:    {spk.name!r} ({playback.device_rate_hz} Hz)", file=out)
        print(f"microphone: {mic.name!r} ({capture.device_rate_hz} Hz, "
              f"{capture.channels} ch, gain {settings.input_gain_db:+.1f} dB)", file=out)
        print("playing the 'listening' cue ...", file=out)
        playback.play_cue(synthesize("listening"), volume_gain(max(settings.cue_volume, 30)))
        deadline = time.monotonic() + 3.0
        while playback.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        print(f"recording {record_s:g} s: speak now ...", file=out, flush=True)
        pcm = _record(capture, record_s)
        code = _verdict(pcm, record_s, out)
        _echo_check(echo, capture, playback, settings, out)
    finally:
        capture.close()
        playback.shutdown()
        pa.terminate()
    return code


def speech_like(seconds: float, rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A voice-like test sound (int16, about -20 dBFS RMS): a glottal pulse train with a
    wandering pitch through two formant resonances, in syllables of about 0.2 s. A canceller
    is judged on what it meets at the bedside, speech, not on a steady tone."""
    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 3.1 * t)
    phase = np.cumsum(pitch / rate_hz)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per pitch period
    rng = np.random.default_rng(7)
    x = pulses + 0.02 * rng.standard_normal(n)
    for freq, bw in ((600.0, 120.0), (1700.0, 200.0)):  # two formants, resonators
        r = np.exp(-np.pi * bw / rate_hz)
        a1, a2 = 2 * r * np.cos(2 * np.pi * freq / rate_hz), -r * r
        y = np.zeros(n)
        for i in range(2, n):
            y[i] = x[i] + a1 * y[i - 1] + a2 * y[i - 2]
        x = y
    syllables = np.clip(np.sin(2 * np.pi * 2.5 * t), 0.0, None) ** 0.5
    x *= syllables
    x *= 10 ** (-20 / 20) * 32768 / max(float(np.sqrt(np.mean(x * x))), 1e-9)
    return np.clip(x, -32768, 32767).astype(np.int16)


def _echo_check(echo: EchoControl, capture: Capture, playback: Playback,
                settings: AudioSettings, out: TextIO) -> None:
    """Play a few seconds of speech-like sound at the answer volume and report what the
    echo canceller made of the echo (its mode, ERLE and the echo's delay)."""
    if echo.effective != "aec":
        why = f" ({echo.unavailable})" if echo.unavailable else ""
        print(f"echo: mode {echo.effective}{why}: no canceller to check", file=out)
        return
    print(f"echo check: playing up to {ECHO_CHECK_S:g} s of test speech, stay quiet ...",
          file=out, flush=True)
    capture.arm()  # a new visit for the canceller: its verdict starts again
    quiet_until = time.monotonic() + 1.0
    while time.monotonic() < quiet_until:  # the canceller hears the room's noise alone
        capture.read_frame(timeout_s=0.5)
    item = "echo-check"
    playback.set_volume(settings.volume)
    playback.write(item, speech_like(ECHO_CHECK_S).tobytes())
    playback.end_item(item)
    deadline = time.monotonic() + ECHO_CHECK_S + 5.0
    # The reader's thread runs the canceller: read until it has judged the echo (or the
    # sound has played out), then stop the sound.
    while time.monotonic() < deadline and not _judged(echo) and \
            (playback.busy or not _saw_playback(echo)):
        capture.read_frame(timeout_s=0.5)
    playback.flush()
    capture.disarm()
    stats = echo.stats().aec
    if stats is None:
        return
    erle = "n/a" if stats.erle_db is None else f"{stats.erle_db:.1f} dB"
    delay = "n/a" if stats.delay_ms is None else f"{stats.delay_ms:.0f} ms"
    print(f"echo: mode aec, canceller {stats.mode}, echo reduced by {erle}, "
          f"echo delay {delay}", file=out)
    if stats.mode == "active":
        print("OK: the echo canceller converged; the patient can interrupt an answer by "
              "voice.", file=out)
    elif stats.mode == "no_echo":
        print("OK: the microphone does not hear the speaker (an echo-cancelling speakerphone "
              "or a muted speaker); the canceller stays out of the way.", file=out)
    else:
        print("WARNING: the echo canceller did not converge; in a visit the kiosk then "
              "mutes the microphone while it speaks (the echo gate). Check the speaker and "
              "microphone are the configured devices and not too close, that the room is "
              "quiet during this check, or set audio.echo_mode: gate.", file=out)


def _saw_playback(echo: EchoControl) -> bool:
    stats = echo.stats().aec
    return stats is not None and stats.far_active_s > 0


def _judged(echo: EchoControl) -> bool:
    stats = echo.stats().aec
    return stats is not None and stats.mode in ("active", "failed", "no_echo")


def _record(capture: Capture, seconds: float) -> np.ndarray:
    need = int(seconds * SAMPLE_RATE_HZ)
    frames: list[np.ndarray] = []
    got = 0
    capture.arm()
    deadline = time.monotonic() + seconds + 3.0
    while got < need and time.monotonic() < deadline:
        frame = capture.read_frame(timeout_s=0.5)
        if frame is not None:
            frames.append(frame.pcm)
            got += len(frame.pcm)
    capture.disarm()
    return np.concatenate(frames) if frames else np.zeros(0, np.int16)


def _verdict(pcm: np.ndarray, seconds: float, out: TextIO) -> int:
    if len(pcm) < 0.5 * seconds * SAMPLE_RATE_HZ:
        print(f"FAIL: only {len(pcm) / SAMPLE_RATE_HZ:.1f} s of audio arrived in "
              f"{seconds:g} s: the microphone stalls. Replug it or try another USB port.",
              file=out)
        return 1
    x = pcm.astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    peak = float(np.abs(x).max())
    clipped = int(np.count_nonzero((pcm >= 32767) | (pcm <= -32768)))
    print(f"level: {dbfs(rms):.1f} dBFS RMS, peak {dbfs(peak):.1f} dBFS, "
          f"clipped samples: {clipped}", file=out)
    if dbfs(peak) < SILENCE_PEAK_DBFS:
        print("FAIL: heard silence. Check the microphone is plugged in and not muted "
              "(alsamixer), or raise audio.input_gain_db.", file=out)
        return 1
    if clipped > CLIP_FRACTION * len(pcm):
        print("FAIL: clipping (the sound hits full scale). Lower audio.input_gain_db or the "
              "microphone's capture level in alsamixer.", file=out)
        return 1
    print("OK: the microphone hears sound at a usable level.", file=out)
    return 0

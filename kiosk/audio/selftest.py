"""`voice-kiosk test-audio`: play a cue, record three seconds, say what the microphone heard.

For IT staff at the bedside: run it, speak normally at the patient's distance, and read the
verdict. Nothing is stored; the recording only lives in memory for the level figures.

Exit codes: 0 the microphone heard sound at a usable level; 1 it heard silence or clipping
(or too little audio arrived); 2 a device could not be found or opened.
"""

from __future__ import annotations

import time
from typing import TextIO

import numpy as np

from kiosk.audio.capture import Capture, dbfs
from kiosk.audio.cues import synthesize
from kiosk.audio.devices import AudioDeviceError, find_device, open_portaudio
from kiosk.audio.playback import Playback, volume_gain
from kiosk.ports import SAMPLE_RATE_HZ
from kiosk.settings import AudioSettings

RECORD_S = 3.0
SILENCE_PEAK_DBFS = -50.0  # quieter than this at its loudest: the mic is dead or muted
CLIP_FRACTION = 0.001  # more samples than this at full scale: the gain is too high


def run_test_audio(settings: AudioSettings, out: TextIO, record_s: float = RECORD_S) -> int:
    """Run the audio self-test against the configured devices, writing a report to `out`."""
    pa = open_portaudio()
    capture = Capture(settings)
    playback = Playback(settings)
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
    finally:
        capture.close()
        playback.shutdown()
        pa.terminate()
    return _verdict(pcm, record_s, out)


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

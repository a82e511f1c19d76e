"""`voice-kiosk devices` and `voice-kiosk test-audio` helpers against the virtual rig."""

from __future__ import annotations

import io
import threading

import pytest

from kiosk.audio.devices import (
    AudioDeviceError,
    find_device,
    format_device_table,
    list_devices,
    open_portaudio,
)
from kiosk.audio.selftest import run_test_audio
from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE
from kiosk.settings import AudioSettings

from .helpers import tone

pytestmark = pytest.mark.audio

SETTINGS = AudioSettings(input_device=MIC_DEVICE, output_device=SPEAKER_DEVICE)


def test_device_table_lists_the_virtual_devices(rig):
    devices = list_devices()
    table = format_device_table(devices)
    assert table.splitlines()[0].split()[:5] == ["index", "name", "in", "out", "rate_hz"]
    assert MIC_DEVICE in table and SPEAKER_DEVICE in table
    pa = open_portaudio()
    try:
        mic = find_device(pa, "KIOSK_M", "input")  # substring, case-insensitive
        assert mic.name == MIC_DEVICE
        assert find_device(pa, mic.index, "input") == mic
        assert find_device(pa, str(mic.index), "input") == mic
        with pytest.raises(AudioDeviceError, match="audio.output_device"):
            find_device(pa, "nothing like this", "output")
        with pytest.raises(AudioDeviceError, match="Prefer a name substring"):
            find_device(pa, 999, "input")
    finally:
        pa.terminate()
    assert "No audio devices" in format_device_table([])


def test_test_audio_reports_level_of_what_the_mic_hears(rig):
    out = io.StringIO()
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(
        run_test_audio(SETTINGS, out, record_s=1.0)))
    feed = rig.play_into_mic(tone(1000, 4.0, amplitude=0.25), 24000)
    worker.start()
    worker.join(30)
    feed.stop()
    text = out.getvalue()
    assert result == [0], text
    assert "OK" in text and "level:" in text
    # -15 dBFS RMS sine at quarter scale, mostly present during the second recorded
    level = float(text.split("level:")[1].split("dBFS")[0])
    assert -25 < level < -13


def test_test_audio_says_silence(rig):
    out = io.StringIO()
    assert run_test_audio(SETTINGS, out, record_s=0.5) == 1
    assert "heard silence" in out.getvalue()


def test_test_audio_missing_device_exit_code_2(rig):
    out = io.StringIO()
    bad = AudioSettings(input_device="Absent Mic", output_device=SPEAKER_DEVICE)
    assert run_test_audio(bad, out) == 2
    assert "Absent Mic" in out.getvalue()

"""bench/audio.py (the in-process profile of the kiosk's audio code) keeps running and
printing its whole table.

Only the shape is checked: figures are never asserted here, a shared machine is too noisy.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "audio.py"
NUMBER = r"(\d+\.\d+)"


def test_audio_profile_prints_every_row():
    out = subprocess.run([sys.executable, str(BENCH), "--seconds", "1", "--repeats", "1",
                          "--latency-seconds", "0.5"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr  # a profile: it judges no goal
    text = out.stdout
    assert "bench/process.py" in text  # says where the process's real cost is measured
    for row in ("kiosk, 24000 Hz device", "kiosk, 48000 Hz device", "naive numpy baseline"):
        m = re.search(re.escape(row) + rf"\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x", text)
        assert m, f"no CPU row for {row!r}:\n{text}"
        capture, playback, duplex, _ = map(float, m.groups())
        assert abs(duplex - capture - playback) < 2e-5  # printed rounded to 5 places
    for rate in (24000, 48000, 44100, 16000):
        assert re.search(rf"{rate} Hz device \(\d+ frames\)(\s+{NUMBER}){{4}}", text), text
    assert re.search(rf"peak RSS of this profile: {NUMBER} MiB", text)

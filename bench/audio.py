"""Audio path benchmark: CPU per audio second, mic-to-send latency, peak RSS, naive baseline.

Run from the repository root::

    .venv/bin/python bench/audio.py            # about 20 s
    .venv/bin/python bench/audio.py --seconds 60 --latency-seconds 10

What is measured (PortAudio callbacks are driven directly, without a sound device, so the
figures are the kiosk's own cost, not the sound server's):

* capture path: input callback (meter, gain, ring) -> read_frame (resample to 24 kHz) ->
  base64 -> JSON ``input_audio_buffer.append`` event text, at a 24 kHz and a 48 kHz device;
* playback path: JSON ``response.output_audio.delta`` text -> base64 decode -> write (ring,
  resampling for 48 kHz) -> output callback (volume, fades, mixing);
* full duplex = both paths, CPU seconds (process time, all threads) per audio second;
* mic-to-send latency: a thread calls the input callback every frame in real time, another
  reads frames, encodes them and "hands them to the socket"; latency = hand-over time minus
  the frame's `captured_at` (the time its last sample reached the callback);
* baseline: a web client's method mirrored in Python (see `bench_baseline`): per-sample
  loops over 4096-sample float blocks converting to int16 for capture, and back (after a
  per-byte base64 copy loop) for playback.
"""

from __future__ import annotations

import argparse
import array
import base64
import json
import resource
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiosk.audio.capture import Capture  # noqa: E402
from kiosk.audio.playback import Playback  # noqa: E402
from kiosk.settings import AudioSettings  # noqa: E402

FRAME_MS = 20
SETTINGS = AudioSettings(frame_ms=FRAME_MS, input_gain_db=0.0, volume=80,
                         capture_buffer_s=10, playback_buffer_s=120, prebuffer_ms=60)
DELTA_MS = 40  # size of the server's audio deltas in the playback path


def _tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _armed_capture(rate: int) -> tuple[Capture, int, list[bytes]]:
    """An armed Capture for a device at `rate`, its callback block, and a second of tone cut
    into such blocks (what the device would hand the callback)."""
    cap = Capture(SETTINGS)
    cap.prepare(rate, 1)
    cap.arm()
    block = cap.block_samples
    src = _tone(rate, 1.0)
    blocks = [src[i:i + block].tobytes() for i in range(0, len(src) - block + 1, block)]
    return cap, block, blocks


def bench_capture(rate: int, seconds: float) -> float:
    """CPU seconds per audio second of the capture path at a device `rate`."""
    cap, block, blocks = _armed_capture(rate)
    n_blocks = int(seconds * rate / block)
    sent = 0
    t0 = time.process_time()
    for i in range(n_blocks):
        cap.callback(blocks[i % len(blocks)], block, {}, 0)
        while (frame := cap.read_frame(0.0)) is not None:
            text = json.dumps({"type": "input_audio_buffer.append",
                               "audio": base64.b64encode(frame.pcm.tobytes()).decode("ascii")})
            sent += len(text)
    cpu = time.process_time() - t0
    assert sent > 0
    return cpu / seconds


def bench_playback(rate: int, seconds: float) -> float:
    """CPU seconds per audio second of the playback path to a device at `rate`."""
    out = Playback(SETTINGS)
    out.prepare(rate, 1)
    src = _tone(24000, DELTA_MS / 1000 * 25)
    step = 24000 * DELTA_MS // 1000
    events = [json.dumps({"type": "response.output_audio.delta", "item_id": "item_1",
                          "response_id": "resp_1", "output_index": 0, "content_index": 0,
                          "delta": base64.b64encode(src[i:i + step].tobytes()).decode()})
              for i in range(0, len(src), step)]
    block = rate * 20 // 1000
    blocks_per_delta = DELTA_MS // 20
    n_deltas = int(seconds * 1000 / DELTA_MS)
    t0 = time.process_time()
    for i in range(n_deltas):
        event = json.loads(events[i % len(events)])
        out.write(event["item_id"], base64.b64decode(event["delta"]))
        for _ in range(blocks_per_delta):
            out.callback(None, block, {}, 0)
    out.end_item("item_1")
    cpu = time.process_time() - t0
    out.shutdown()
    return cpu / seconds


def bench_baseline(seconds: float) -> tuple[float, float]:
    """A web client's method, mirrored in Python (OpenAI realtime-console style).

    Capture: float32 blocks of 4096 samples from the device -> `floatTo16BitPCM` (per-sample
    clamp and DataView.setInt16, here struct.pack_into) -> base64 -> JSON. Playback: JSON ->
    `base64ToArrayBuffer` (atob, then a per-byte charCodeAt loop) -> Int16Array -> per-sample
    int16/0x8000 float conversion -> float32 block to the device.
    """
    block_bytes = (_tone(24000, 4096 / 24000).astype(np.float32) / 32768.0).tobytes()
    n_blocks = max(1, int(seconds * 24000 / 4096))
    pack = struct.Struct("<h").pack_into
    t0 = time.process_time()
    for _ in range(n_blocks):
        floats = array.array("f", block_bytes)
        out = bytearray(2 * len(floats))
        for i, x in enumerate(floats):
            x = max(-1.0, min(1.0, x))
            pack(out, 2 * i, int(x * 0x8000) if x < 0 else int(x * 0x7FFF))
        json.dumps({"type": "input_audio_buffer.append",
                    "audio": base64.b64encode(out).decode("ascii")})
    cap = (time.process_time() - t0) / (n_blocks * 4096 / 24000)
    event = json.dumps({"type": "response.output_audio.delta",
                        "delta": base64.b64encode(_tone(24000, 4096 / 24000).tobytes()).decode()})
    t0 = time.process_time()
    for _ in range(n_blocks):
        binary = base64.b64decode(json.loads(event)["delta"]).decode("latin-1")  # atob
        raw = bytearray(len(binary))
        for i, ch in enumerate(binary):
            raw[i] = ord(ch)
        ints = array.array("h")
        ints.frombytes(bytes(raw))
        floats = array.array("f", bytes(4 * len(ints)))
        for i, v in enumerate(ints):
            floats[i] = v / 0x8000
        floats.tobytes()
    play = (time.process_time() - t0) / (n_blocks * 4096 / 24000)
    return cap, play


def bench_latency(rate: int, seconds: float) -> list[float]:
    """Mic-to-send latencies (ms) with callbacks driven in real time by a thread."""
    cap, block, blocks = _armed_capture(rate)
    stop = threading.Event()
    latencies: list[float] = []

    def device() -> None:
        start = time.monotonic()
        i = 0
        while not stop.is_set():
            cap.callback(blocks[i % len(blocks)], block, {}, 0)
            i += 1
            stop.wait(max(0.0, start + i * block / rate - time.monotonic()))

    def sender() -> None:
        while not stop.is_set():
            frame = cap.read_frame(0.2)
            if frame is None:
                continue
            json.dumps({"type": "input_audio_buffer.append",
                        "audio": base64.b64encode(frame.pcm.tobytes()).decode("ascii")})
            latencies.append((time.monotonic() - frame.captured_at) * 1000)

    threads = [threading.Thread(target=device), threading.Thread(target=sender)]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    return latencies[5:]  # skip the resampler's start-up


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="audio seconds per CPU run")
    ap.add_argument("--latency-seconds", type=float, default=5.0,
                    help="real-time seconds per latency run")
    args = ap.parse_args()

    rows = []
    for rate in (24000, 48000):
        cap = bench_capture(rate, args.seconds)
        play = bench_playback(rate, args.seconds)
        rows.append((f"kiosk, {rate} Hz device", cap, play, cap + play))
    base_cap, base_play = bench_baseline(min(args.seconds, 5.0))
    rows.append(("baseline (per-sample loop)", base_cap, base_play, base_cap + base_play))

    print(f"{'path':<30}{'capture':>12}{'playback':>12}{'full duplex':>14}   CPU-s per audio-s")
    for name, c, p, f in rows:
        print(f"{name:<30}{c:>12.5f}{p:>12.5f}{f:>14.5f}")
    worst = max(r[3] for r in rows[:2])
    speedup = rows[2][3] / worst
    print(f"\nspeed-up vs baseline (worst kiosk case): {speedup:.0f}x  (target >= 20x)")
    print(f"full duplex worst case: {worst:.5f} CPU-s/s  (target <= 0.01)")

    print(f"\n{'mic-to-send latency':<30}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}"
          f"   target p99 <= {FRAME_MS + 5} ms")
    ok_latency = True
    for rate in (24000, 48000):
        lat = np.array(bench_latency(rate, args.latency_seconds))
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        ok_latency &= p99 <= FRAME_MS + 5
        print(f"{f'{rate} Hz device ({len(lat)} frames)':<30}{p50:>10.2f}{p95:>10.2f}"
              f"{p99:>10.2f}{lat.max():>10.2f}")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS: {rss_mib:.1f} MiB")
    ok = worst <= 0.01 and speedup >= 20 and ok_latency
    print("targets:", "all met" if ok else "NOT all met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

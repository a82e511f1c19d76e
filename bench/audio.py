"""Profile of the kiosk's own audio code, in-process: not what the process costs.

This calls the capture and playback code and the event encoders directly, without sound
devices, sockets or the daemon's other threads. It shows what the kiosk's own Python and
numpy work costs per audio second, and where a change to that code moves it. It does **not**
say what the machine pays for a running kiosk: PortAudio's and PulseAudio's threads, the
WebSocket, the event loops and every wake-up are outside it. That is `bench/process.py`
(`bash systemd/bootstrap.sh bench`), which also judges the goals; this profile judges none.

Run from the repository root::

    .venv/bin/python bench/audio.py            # about 40 s
    .venv/bin/python bench/audio.py --seconds 300 --repeats 5 --latency-seconds 10

What is measured:

* capture path: input callback (gain, ring) -> read_frame (resample to 24 kHz) -> the
  kiosk's own ``input_audio_buffer.append`` encoder (`kiosk.session.protocol`: base64, JSON
  bytes for the socket), at a 24 kHz and a 48 kHz device;
* playback path: the kiosk's own parser and decoder (`parse_message`, `decode_pcm16`) for
  ``response.output_audio.delta`` text -> write (resampling for 48 kHz, volume, ring) ->
  output callback;
* full duplex = both paths, CPU seconds (process time, all threads) per audio second;
* idle: both callbacks while no session runs;
* mic-to-send latency: a thread calls the input callback every frame in real time, another
  reads frames, encodes them and "hands them to the socket"; latency = hand-over time minus
  the frame's `captured_at` (the time its last sample reached the callback);
* naive numpy baseline (`bench_baseline`): what a plain Python client does with the same
  int16 stream: 20 ms blocks -> base64 -> json.dumps for capture; json.loads -> base64
  decode -> numpy volume -> int16 bytes for playback. Same work, standard library codecs.

Every CPU figure is the best of `--repeats` runs after a warm-up run, the baseline's too: on a
shared machine the best run is the one least disturbed by other work.
"""

from __future__ import annotations

import argparse
import base64
import json
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiosk.audio.capture import Capture  # noqa: E402
from kiosk.audio.playback import Playback  # noqa: E402
from kiosk.session import protocol  # noqa: E402
from kiosk.settings import AudioSettings  # noqa: E402

FRAME_MS = 20
SETTINGS = AudioSettings(frame_ms=FRAME_MS, input_gain_db=0.0, volume=80,
                         capture_buffer_s=10, playback_buffer_s=120, prebuffer_ms=60)
DELTA_MS = 40  # size of the server's audio deltas in the playback path
MAX_MESSAGE_BYTES = 1 << 20
# What PyAudio passes every callback (PortAudio's stream clock, seconds).
TIME_INFO = {"input_buffer_adc_time": 0.0, "current_time": 10.0, "output_buffer_dac_time": 10.04}


def _send_text(frame) -> bytes:
    """What the conversation and the realtime client do with one frame before the socket."""
    return protocol.dumps(protocol.append_audio(protocol.pcm16_bytes(frame.pcm)))


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
    assert block is not None  # set by prepare()
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
        cap.callback(blocks[i % len(blocks)], block, TIME_INFO, 0)
        while (frame := cap.read_frame(0.0)) is not None:
            sent += len(_send_text(frame))
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
        event = protocol.parse_message(events[i % len(events)], MAX_MESSAGE_BYTES)
        out.write(event["item_id"], protocol.decode_pcm16(event["delta"]))
        for _ in range(blocks_per_delta):
            out.callback(None, block, TIME_INFO, 0)
    out.end_item("item_1")
    cpu = time.process_time() - t0
    out.shutdown()
    return cpu / seconds


def bench_baseline(seconds: float) -> tuple[float, float]:
    """The naive numpy client: (capture, playback) CPU seconds per audio second.

    Capture: the device's int16 20 ms block -> base64 -> json.dumps. Playback: json.loads ->
    base64 decode -> numpy int16 -> volume in float -> int16 bytes for the device. The kiosk
    does the same work (its input gain is 0 dB by default, its volume 80 %) with its ring
    buffers, meter and faster codecs around it.
    """
    frame = _tone(24000, FRAME_MS / 1000).tobytes()
    n = max(1, int(seconds * 1000 / FRAME_MS))
    t0 = time.process_time()
    for _ in range(n):
        json.dumps({"type": "input_audio_buffer.append",
                    "audio": base64.b64encode(frame).decode("ascii")})
    cap = (time.process_time() - t0) / (n * FRAME_MS / 1000)
    event = json.dumps({"type": "response.output_audio.delta", "item_id": "item_1",
                        "delta": base64.b64encode(_tone(24000, DELTA_MS / 1000).tobytes())
                        .decode()})
    gain = (SETTINGS.volume / 100) ** 2
    n = max(1, int(seconds * 1000 / DELTA_MS))
    t0 = time.process_time()
    for _ in range(n):
        pcm = np.frombuffer(base64.b64decode(json.loads(event)["delta"]), dtype=np.int16)
        (pcm.astype(np.float32) * gain).astype(np.int16).tobytes()
    play = (time.process_time() - t0) / (n * DELTA_MS / 1000)
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
            cap.callback(blocks[i % len(blocks)], block, TIME_INFO, 0)
            i += 1
            stop.wait(max(0.0, start + i * block / rate - time.monotonic()))

    def sender() -> None:
        while not stop.is_set():
            frame = cap.read_frame(0.2)
            if frame is None:
                continue
            _send_text(frame)
            latencies.append((time.monotonic() - frame.captured_at) * 1000)

    threads = [threading.Thread(target=device), threading.Thread(target=sender)]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    return latencies[5:]  # skip the resampler's start-up


def bench_idle(seconds: float) -> float:
    """CPU seconds per second of both callbacks with no session (24 kHz devices)."""
    cap, block, blocks = _armed_capture(24000)
    cap.disarm()
    out = Playback(SETTINGS)
    out.prepare(24000, 1)
    n = int(seconds * 24000 / block)
    t0 = time.process_time()
    for i in range(n):
        cap.callback(blocks[i % len(blocks)], block, TIME_INFO, 0)
        out.callback(None, block, TIME_INFO, 0)
    cpu = time.process_time() - t0
    out.shutdown()
    return cpu / seconds


def best_of(repeats: int, run, *args) -> float:
    """The lowest of `repeats` runs after one warm-up run (caches, allocator, branch state)."""
    run(*args)
    return min(run(*args) for _ in range(repeats))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="audio seconds per CPU run")
    ap.add_argument("--repeats", type=int, default=3, help="CPU runs per figure (best kept)")
    ap.add_argument("--latency-seconds", type=float, default=5.0,
                    help="real-time seconds per latency run")
    args = ap.parse_args()
    secs, reps = args.seconds, max(1, args.repeats)

    print("profile of the kiosk's own audio code, in-process (no devices, no sockets, no "
          "other threads);\nwhat the running process costs is bench/process.py\n")
    bench_baseline(2.0)  # warm-up, as in best_of
    runs = [bench_baseline(secs) for _ in range(reps)]
    base_cap, base_play = min(r[0] for r in runs), min(r[1] for r in runs)
    base = base_cap + base_play
    rows = []
    for rate in (24000, 48000):
        cap = best_of(reps, bench_capture, rate, secs)
        play = best_of(reps, bench_playback, rate, secs)
        rows.append((f"kiosk, {rate} Hz device", cap, play, cap + play))
    rows.append(("naive numpy baseline", base_cap, base_play, base))

    print(f"{'CPU-s per audio-s':<30}{'capture':>11}{'playback':>11}{'full duplex':>13}"
          f"{'vs baseline':>13}")
    for name, c, p, f in rows:
        print(f"{name:<30}{c:>11.5f}{p:>11.5f}{f:>13.5f}{base / f:>12.2f}x")
    idle = best_of(reps, bench_idle, secs)
    print(f"{'kiosk idle (no session)':<30}{'':>11}{'':>11}{idle:>13.5f}   per second")

    print(f"\n{'mic-to-send latency':<30}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for rate in (24000, 48000, 44100, 16000):
        lat = np.array(bench_latency(rate, args.latency_seconds))
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        print(f"{f'{rate} Hz device ({len(lat)} frames)':<30}{p50:>10.2f}{p95:>10.2f}"
              f"{p99:>10.2f}{lat.max():>10.2f}")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this profile: {rss_mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Echo canceller evaluation: every installed WebRTC canceller on the same synthetic scenes.

Run from the repository root::

    .venv/bin/python bench/aec.py                 # about a minute
    .venv/bin/python bench/aec.py --cpu-seconds 120 --json out.json

The scene (`kiosk.sim.echo_scene`): an espeak-ng answer played through a synthetic room
(delay, decaying-noise impulse response with RT60 0.3 s, attenuation, background noise), the
patient's phrase 6 dB below the echo in the middle of the answer (double talk), then alone.
For each candidate, in-process, frame by frame as the kiosk would call it:

* ERLE (dB) on far-end-only windows from 2 s after the first answer audio (median), and the
  time from the first answer audio until every later window reaches 25 dB (the goal: <= 2 s);
* double talk: correlation of the output with the clean phrase, and the phrase's gain;
* the phrase alone (nothing playing): the same two figures (should be ~1 and ~0 dB);
* echo delays of 30 and 150 ms; a misaligned reference (echo 1 s behind it, and a reference
  100 ms *later* than the echo) -- the ERLE there says whether a fallback is needed;
* a hot reference (the reference plays, the microphone hears no echo): what is left of the
  patient's phrase;
* CPU per audio second of the canceller call itself (`time.process_time`, all threads, best
  of `--repeats` runs over `--cpu-seconds` of audio), the process's memory and thread growth
  when the canceller is created, and the sample rates and frame sizes it accepts.

Candidates that are not installed are listed and skipped (``pip install livekit
pywebrtc-audio`` to measure both).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiosk.sim.echo_scene import (  # noqa: E402
    EchoScene,
    build_scene,
    convergence_s,
    erle_windows,
    near_kept,
    output_lag,
)
from kiosk.sim.room import RATE_HZ, RoomModel  # noqa: E402

GOAL_ERLE_DB = 25.0
GOAL_CONVERGE_S = 2.0
GOAL_CPU = 0.01  # CPU-s per audio second
Process = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (mic, far) int16 -> int16


@dataclass(frozen=True)
class Candidate:
    name: str
    package: str
    rate_hz: int
    frame_ms: int
    make: Callable[[int, int], Process]  # (rate, frame samples) -> per-frame function
    lookahead_frames: int = 0
    """Frames by which the output lags the call (see `_kiosk_wrapper`); `run` takes it off."""


def _livekit(rate: int, n: int) -> Process:
    from livekit import rtc

    apm = rtc.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)
    mic_buf, far_buf = bytearray(n * 2), bytearray(n * 2)
    mic_frame = rtc.AudioFrame(mic_buf, rate, 1, n)
    far_frame = rtc.AudioFrame(far_buf, rate, 1, n)
    mic_v, far_v = np.frombuffer(mic_buf, np.int16), np.frombuffer(far_buf, np.int16)

    def process(mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        far_v[:] = far
        apm.process_reverse_stream(far_frame)
        mic_v[:] = mic
        apm.set_stream_delay_ms(0)  # the reference is fed aligned; AEC3 finds the rest
        apm.process_stream(mic_frame)
        return mic_v

    return process


def _pywebrtc_processor(rate: int, n: int) -> Process:
    from pywebrtc_audio import AudioProcessor

    ap = AudioProcessor(sample_rate=rate, echo_cancellation=True)
    return lambda mic, far: ap.process(mic, far)


def _pywebrtc_canceller(rate: int, n: int) -> Process:
    from pywebrtc_audio import EchoCanceller

    ec = EchoCanceller(sample_rate=rate)
    return lambda mic, far: ec.process(mic, far)


def _kiosk_wrapper(rate: int, n: int) -> Process:
    """The kiosk's wrapper, fed as in the daemon: the playback callback hands the speaker a
    block (and the wrapper its reference) before the block is heard, and a microphone frame
    reaches the wrapper after it was heard. So each call pushes this frame's reference and
    cleans the *previous* microphone frame: the reference is always ahead, by one frame
    (the daemon's lead is the two devices' latencies plus a frame). Fed both at the same
    instant, the reference would never be ahead of the microphone, as it always is."""
    from kiosk.audio.aec import EchoCanceller

    aec = EchoCanceller(rate_hz=rate, frame_samples=n)
    clock = {"t": 0.0}
    held = np.zeros(n, np.int16)
    step = n / rate

    def process(mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        aec.push_reference(far, clock["t"])
        out = aec.process(held, clock["t"] - step)
        held[:] = mic
        clock["t"] += step
        return out

    return process


CANDIDATES = [
    Candidate("livekit APM @24k/10ms", "livekit", 24000, 10, _livekit),
    Candidate("livekit APM @48k/10ms", "livekit", 48000, 10, _livekit),
    Candidate("pywebrtc AudioProcessor @24k/20ms", "pywebrtc_audio", 24000, 20,
              _pywebrtc_processor),
    Candidate("pywebrtc EchoCanceller @48k/20ms", "pywebrtc_audio", 48000, 20,
              _pywebrtc_canceller),
    Candidate("pywebrtc EchoCanceller @16k/20ms", "pywebrtc_audio", 16000, 20,
              _pywebrtc_canceller),
    Candidate("kiosk.audio.aec wrapper @24k/20ms", "kiosk.audio.aec", 24000, 20,
              _kiosk_wrapper, lookahead_frames=1),
]


def installed(package: str) -> str | None:
    """The installed version of `package`, or None."""
    from importlib import metadata

    dist = {"pywebrtc_audio": "pywebrtc-audio", "kiosk.audio.aec": "voice-kiosk"}.get(
        package, package)
    try:
        __import__(package)
        return metadata.version(dist)
    except Exception:
        return None


def run(cand: Candidate, mic24: np.ndarray, far24: np.ndarray) -> np.ndarray:
    """The candidate's output for a whole scene (24 kHz int16 in and out), frame by frame."""
    import soxr

    rate, n = cand.rate_hz, cand.rate_hz * cand.frame_ms // 1000
    mic, far = mic24, far24
    if rate != RATE_HZ:
        mic = EchoScene.int16(soxr.resample(mic24.astype(np.float32), RATE_HZ, rate))
        far = EchoScene.int16(soxr.resample(far24.astype(np.float32), RATE_HZ, rate))
    process = cand.make(rate, n)
    skip = cand.lookahead_frames * n
    pad = np.zeros(skip, np.int16)
    mic, far = np.concatenate([mic, pad]), np.concatenate([far, pad])
    out = np.zeros(len(mic), np.int16)
    for i in range(0, len(mic) - n + 1, n):
        out[i:i + n] = process(mic[i:i + n], far[i:i + n])
    out = out[skip:]
    if rate != RATE_HZ:
        out = EchoScene.int16(soxr.resample(out.astype(np.float32), rate, RATE_HZ))
    return out


def quality(cand: Candidate, scene: EchoScene) -> dict:
    """ERLE, convergence and near-end figures of one candidate on one scene."""
    out = run(cand, scene.int16(scene.mic), scene.int16(scene.far)).astype(np.float32)
    rows = erle_windows(scene.mic, out, scene.far_only)
    start = scene.answer_start / RATE_HZ
    settled = [e for t, e in rows if t >= start + GOAL_CONVERGE_S]
    lag = output_lag(out, scene.near, scene.near_alone)
    dt_corr, dt_gain = near_kept(out, scene.near, scene.double_talk, lag)
    alone_corr, alone_gain = near_kept(out, scene.near, scene.near_alone, lag)
    return {"erle_db": statistics.median(settled) if settled else math.nan,
            "erle_p10_db": float(np.percentile(settled, 10)) if settled else math.nan,
            "converge_s": convergence_s(rows, start, GOAL_ERLE_DB),
            "dt_corr": dt_corr, "dt_gain_db": dt_gain,
            "alone_corr": alone_corr, "alone_gain_db": alone_gain,
            "lag_ms": lag * 1000 / RATE_HZ}


def cpu_per_audio_s(cand: Candidate, seconds: float, repeats: int) -> float:
    """Best-of-`repeats` CPU seconds per audio second of the canceller calls alone."""
    scene = build_scene()
    reps = int(math.ceil(seconds * RATE_HZ / len(scene.far)))
    mic = np.tile(scene.int16(scene.mic), reps)
    far = np.tile(scene.int16(scene.far), reps)
    import soxr

    rate, n = cand.rate_hz, cand.rate_hz * cand.frame_ms // 1000
    if rate != RATE_HZ:
        mic = scene.int16(soxr.resample(mic.astype(np.float32), RATE_HZ, rate))
        far = scene.int16(soxr.resample(far.astype(np.float32), RATE_HZ, rate))
    frames = [(mic[i:i + n].copy(), far[i:i + n].copy()) for i in range(0, len(mic) - n + 1, n)]
    best = math.inf
    for _ in range(repeats + 1):  # the first run warms up
        process = cand.make(rate, n)
        t0 = time.process_time()
        for m, f in frames:
            process(m, f)
        best = min(best, time.process_time() - t0)
    return best / (len(frames) * n / rate)


def footprint(cand: Candidate) -> dict:
    """Resident memory (MiB) and threads the process gains when the canceller is created
    (in a fresh interpreter, so earlier candidates do not count)."""
    import subprocess

    root = str(Path(__file__).resolve().parent.parent)
    code = (f"import os,sys,numpy as np;sys.path.insert(0,{root!r});"
            "rss=lambda:int(open('/proc/self/statm').read().split()[1])"
            "*os.sysconf('SC_PAGE_SIZE');"
            "th=lambda:len(os.listdir('/proc/self/task'));r0,t0=rss(),th();"
            f"import bench.aec as b;c=[c for c in b.CANDIDATES if c.name=={cand.name!r}][0];"
            "n=c.rate_hz*c.frame_ms//1000;p=c.make(c.rate_hz,n);z=np.zeros(n,np.int16);"
            "[p(z,z) for _ in range(100)];print(rss()-r0,th()-t0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    try:
        rss, threads = out.stdout.split()
        return {"rss_mib": int(rss) / 2**20, "threads": int(threads)}
    except ValueError:
        return {"rss_mib": math.nan, "threads": -1}


def accepted(cand: Candidate) -> str:
    """Which (rate kHz / frame ms) combinations the canceller accepts."""
    ok = []
    for rate in (8000, 16000, 24000, 32000, 44100, 48000):
        for ms in (10, 20):
            n = rate * ms // 1000
            try:
                cand.make(rate, n)(np.zeros(n, np.int16), np.zeros(n, np.int16))
                ok.append(f"{rate / 1000:g}/{ms}")
            except Exception:
                pass
    return " ".join(ok) or "none"


def evaluate(cand: Candidate, args: argparse.Namespace) -> dict:
    res: dict = {"name": cand.name, "version": installed(cand.package)}
    res["main"] = quality(cand, build_scene(RoomModel(delay_ms=80)))
    res["equal_level"] = quality(cand, build_scene(RoomModel(delay_ms=80),
                                                   near_below_echo_db=0.0))
    for d in (30, 150):
        res[f"delay_{d}"] = quality(cand, build_scene(RoomModel(delay_ms=d)))
    res["misaligned_1s"] = quality(cand, build_scene(RoomModel(delay_ms=1000)))
    late = build_scene(RoomModel(delay_ms=20))
    late.far = np.concatenate([np.zeros(int(0.12 * RATE_HZ), np.float32),
                               late.far])[:len(late.far)]  # reference 100 ms after the echo
    res["reference_late"] = quality(cand, late)
    res["hot_reference"] = quality(cand, build_scene(RoomModel(delay_ms=80),
                                                     hot_reference=True))
    res["cpu"] = cpu_per_audio_s(cand, args.cpu_seconds, args.repeats)
    res.update(footprint(cand))
    res["accepts"] = accepted(cand)
    return res


def report(results: list[dict]) -> str:
    head = ("| candidate | ERLE dB (p10) | converge s | DT corr / gain dB | alone corr | "
            "30 / 150 ms ERLE | 1 s off / late ref ERLE | hot ref: phrase gain dB | "
            "CPU s/s | RSS MiB / threads | lag ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        m = r["main"]
        lines.append(
            f"| {r['name']} {r['version']} | {m['erle_db']:.1f} ({m['erle_p10_db']:.1f}) | "
            f"{m['converge_s']:.2f} | {m['dt_corr']:.2f} / {m['dt_gain_db']:+.1f} | "
            f"{m['alone_corr']:.2f} | {r['delay_30']['erle_db']:.1f} / "
            f"{r['delay_150']['erle_db']:.1f} | {r['misaligned_1s']['erle_db']:.1f} / "
            f"{r['reference_late']['erle_db']:.1f} | "
            f"{r['hot_reference']['dt_gain_db']:+.1f} | {r['cpu']:.4f} | "
            f"{r['rss_mib']:.0f} / +{r['threads']} | {m['lag_ms']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="evaluate the candidates whose name contains this")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args(argv)
    results = []
    for cand in CANDIDATES:
        if args.only and args.only not in cand.name:
            continue
        if installed(cand.package) is None:
            print(f"skipped (not installed): {cand.name}", file=sys.stderr)
            continue
        print(f"measuring {cand.name} ...", file=sys.stderr, flush=True)
        results.append(evaluate(cand, args))
    print(report(results))
    print(f"\nmachine: {os.cpu_count()} cores; goals: ERLE >= {GOAL_ERLE_DB:g} dB within "
          f"{GOAL_CONVERGE_S:g} s of the first answer audio, CPU <= {GOAL_CPU} s/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    met = [r["name"] for r in results if r["main"]["converge_s"] <= GOAL_CONVERGE_S
           and r["main"]["erle_db"] >= GOAL_ERLE_DB and r["cpu"] <= GOAL_CPU]
    print("meet the goals: " + (", ".join(met) or "none"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

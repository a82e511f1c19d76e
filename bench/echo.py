"""Echo benchmark (issue 14): `audio.echo_mode` aec, gate and none side by side, through the
real daemon on the echo rig, and the canceller's own figures.

Run from the repository root (about 18 minutes with the defaults)::

    .venv/bin/python bench/echo.py
    .venv/bin/python bench/echo.py --answers 3 --idle-s 2 --cpu-seconds 5     # a smoke run

For each mode, `voice-kiosk run` (the example configuration with the virtual devices, mock
GPIO, the simulator as gateway and service, `audio.echo_mode` set) talks to the simulator in
its own process; between the virtual speaker and microphone a simulated room
(`kiosk.audio.room_rig.EchoRoom`: 60 ms, RT60 0.3 s, background noise) brings the answer back
as loud as the patient speaks (0 dB echo-to-speech). Answers are espeak-ng speech. A trial is
one visit from rest: the press (and its chime), the patient's question through the room, the
answer. Between trials the kiosk rests as it would between patients' presses: with gate and
none both streams close and PortAudio shuts down, so each visit opens new ones; with aec both
stay open (the kiosk's choice, see kiosk/audio/engine.py).

* false barge-ins: `--answers` answers nobody talks over; one that the simulator's voice
  detector cuts short ("patient speaking") is a false barge-in;
* true barge-ins: `--answers` answers over which the patient says "Stop, please wait." 6 dB
  under the echo, 1 s into the answer; detected when the kiosk stops the answer for the
  patient's voice, within 500 ms of the phrase's start (the time from the phrase being
  handed to the room to the kiosk's STATUS=listening, so the room's latency counts against it);
* ERLE as the kiosk measures it (microphone against canceller output, median of the 0.5 s
  windows in which the microphone hears the echo): `voice_kiosk_aec_erle_db` from the
  daemon's metrics file after each answer, median over the answers after the first;
* idle: the whole daemon at rest after start-up, before any visit (`--idle-s`, from /proc:
  CPU of all its threads, context switches as wake-ups, RSS and threads at the end): what the
  mode costs while nobody uses the kiosk;
* in-process, on the synthetic echo scene of `bench/aec.py` (same room, 100 ms frames as the
  daemon): ERLE from 2 s after the first answer audio, and the time until every later window
  is at least 25 dB; the canceller's CPU per audio second (`time.process_time`, best of 3).

Exit status 1 when a goal of issue 14 is missed for aec; the output says which.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import aec as aec_bench  # noqa: E402
from bench.harness import KioskDaemon, Reaper, bench_config, interrupt_on_sigterm  # noqa: E402
from bench.procstat import Window, sample  # noqa: E402
from kiosk.audio.room_rig import EchoRoom  # noqa: E402
from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE, VirtualAudio  # noqa: E402
from kiosk.sim.echo_scene import ANSWER_TEXT, PHRASE_TEXT  # noqa: E402
from kiosk.sim.remote import SimulatorProcess  # noqa: E402
from kiosk.sim.room import RoomModel  # noqa: E402
from kiosk.sim.voice import spoken  # noqa: E402

RATE = 24000
ROOM = RoomModel(delay_ms=60.0, echo_gain_db=0.0, noise_dbfs=-65.0)
GOAL_FALSE = 0
GOAL_TRUE = 19 / 20
GOAL_SILENCED_S = 0.5
IDLE_SETTLE_S = 5.0  # after READY: the start-up check's streams close (1 s grace)
WARM_UP_S = 8.0  # the first answer after start; the kiosk trusts the canceller after ~5 s
REST_S = 2.5  # the streams' 1 s grace, the supervisor's 0.25 s look, PortAudio's shutdown
PHRASE_TAIL_S = 1.0  # the room (60 ms, RT60 0.3 s) and the rig's own ~75 ms, with margin
MODES = ("aec", "gate", "none")


@dataclass
class ModeResult:
    mode: str
    answers: int = 0
    false_barge_ins: int = 0
    cut_short: int = 0  # answers of the true barge-in test that stopped before the phrase
    failures: list[str] = field(default_factory=list)  # each answer that stopped itself
    true_trials: int = 0
    true_detected: int = 0  # the kiosk stopped the answer for the patient's voice
    true_in_time: int = 0  # ... within GOAL_SILENCED_S of the phrase's start
    latencies_s: list[float] = field(default_factory=list)
    erle_db: list[float] = field(default_factory=list)
    fallbacks: float = 0.0
    errors: list[str] = field(default_factory=list)
    idle: Window | None = None  # the whole daemon at rest after start-up, before any visit
    rig_jumps: int = 0  # times the echo rig moved the echo (EchoRoom.jumps)


def rms_dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(10 * np.log10(np.mean(x * x) / 32768.0**2 + 1e-12))


def voice(text: str, level_dbfs: float) -> np.ndarray:
    """`text` spoken by the virtual patient at an RMS level (of its voiced part)."""
    x = spoken(text, voice="en-us+f3", speed=150, pitch=70).astype(np.float64)
    voiced = x[np.abs(x) > 100]
    x *= 10 ** ((level_dbfs - rms_dbfs(voiced)) / 20)
    return np.clip(x, -32768, 32767).astype(np.int16)


def metric(textfile: Path, name: str) -> float | None:
    if not textfile.exists():
        return None
    for line in textfile.read_text().splitlines():
        if line.startswith(name + "{"):
            value = float(line.rsplit(" ", 1)[1])
            return None if np.isnan(value) else value
    return None


class Bedside:
    """One daemon in one echo mode, the room and the simulator around it."""

    def __init__(self, mode: str, rig: VirtualAudio, sim: SimulatorProcess, room: EchoRoom,
                 workdir: Path, reaper: Reaper) -> None:
        key = workdir / "gateway-api-key"
        key.write_text(sim.api_key + "\n")
        key.chmod(0o600)
        config, _ = bench_config(sim.gateway_url, key, MIC_DEVICE, SPEAKER_DEVICE)
        config["audio"]["echo_mode"] = mode
        config["visit"]["idle_timeout_s"] = 30
        self.textfile = workdir / "voice-kiosk.prom"
        config["metrics"] = {"textfile": str(self.textfile), "interval_s": 1}
        config["logging"] = {"target": "stderr", "level": "info"}
        self.sim, self.room = sim, room
        self.daemon = KioskDaemon(config, workdir, rig.env, reaper)
        self.daemon.wait_ready()
        self.question = np.concatenate([voice("Could I have some water?", -24.0),
                                        np.zeros(RATE, np.int16)])

    def state(self) -> str:
        states = self.daemon.notify.states()
        return states[-1] if states else ""

    def to_idle(self, timeout_s: float = 20.0) -> None:
        """End whatever visit runs (a press ends a listening visit, interrupts an answer)."""
        deadline = time.monotonic() + timeout_s
        while self.state() != "idle":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the kiosk did not get back to idle: {self.state()}")
            if self.state() in ("listening", "connecting", "thinking", "speaking"):
                self.daemon.press()
            time.sleep(0.3)

    def answer(self, answer_s: float) -> float:
        """A new visit from rest: the press, the question and the answer starting; when the
        answer started."""
        self.sim.knobs.answer_voice = "speech"
        self.sim.knobs.answer_text = ANSWER_TEXT
        self.sim.knobs.answer_s = answer_s
        self.to_idle()
        # At rest as between two patients' presses: with gate and none both streams close
        # 1 s after the visit and PortAudio shuts down, so the next visit opens new ones.
        time.sleep(REST_S)
        self.daemon.wait_state("listening", self.daemon.press())
        asked = time.monotonic()
        self.room.say(self.question)
        return self.daemon.wait_state("speaking", asked, timeout_s=20)

    def failure(self, trial: str, started: float, rig_jumps: int) -> str:
        """An answer that stopped itself: what ended it (its next STATUS) and when, and
        whether the echo rig moved the echo meanwhile (a real room does not)."""
        found = self.daemon.notify.first_status_after(started, unless="speaking")
        ended = (f"{found[1]!r} {found[0] - started:.2f} s into the answer" if found
                 else "no STATUS yet")
        jumped = (f"; the echo rig moved the echo {rig_jumps} time(s) meanwhile (its queue "
                  "corrected, or its server streams ran dry or over)" if rig_jumps else "")
        return f"{trial}: {ended}{jumped}"

    def answer_ended(self, after: float, timeout_s: float) -> tuple[float, str]:
        at, fields = self.daemon.notify.wait("STATUS", "listening ", after, timeout_s)
        return at, fields["STATUS"]


def run_mode(mode: str, args: argparse.Namespace, reaper: Reaper) -> ModeResult:
    result = ModeResult(mode)
    with tempfile.TemporaryDirectory(prefix=f"bench-echo-{mode}-") as tmp, \
            VirtualAudio() as rig, SimulatorProcess() as sim, EchoRoom(rig, ROOM) as room:
        side = Bedside(mode, rig, sim, room, Path(tmp), reaper)
        try:
            # What the mode costs while nobody uses the kiosk (most of its life): with aec
            # both streams stay open.
            time.sleep(IDLE_SETTLE_S)
            first = sample(side.daemon.pid)
            time.sleep(args.idle_s)
            result.idle = Window(first, sample(side.daemon.pid))
            # The first answer after start: the canceller learns the room, and the answer's
            # level on the speaker (the echo's, at 0 dB) sets the patient's phrase 6 dB under.
            speaker = rig.record_speaker()
            if not speaker.wait_ready(5):
                raise RuntimeError("cannot record the virtual speaker")
            started = side.answer(WARM_UP_S)
            side.answer_ended(started, WARM_UP_S + 15)
            played = speaker.samples()
            speaker.stop()
            # Until it has converged once after start, the kiosk mutes the microphone while
            # it speaks: the trials would measure the gate, not the canceller.
            if mode == "aec" and "echo canceller converged" not in side.daemon.log_text():
                result.errors.append(f"the canceller did not converge in the first "
                                     f"{WARM_UP_S:g} s answer after start")
            echo_level = rms_dbfs(played[np.abs(played) > 100]) + ROOM.echo_gain_db
            for i in range(args.answers):
                jumps = room.jumps
                started = side.answer(args.answer_s)
                _, status = side.answer_ended(started, args.answer_s + 15)
                result.answers += 1
                if "patient speaking" in status:
                    result.false_barge_ins += 1
                    result.failures.append(side.failure(f"false barge-in test, answer {i + 1}",
                                                        started, room.jumps - jumps))
                erle = metric(side.textfile, "voice_kiosk_aec_erle_db")
                if mode == "aec" and erle is not None:
                    result.erle_db.append(erle)
            phrase = voice(PHRASE_TEXT, echo_level - 6.0)
            for i in range(args.answers):
                jumps = room.jumps
                started = side.answer(args.answer_s + 3.0)
                time.sleep(max(0.0, started + 1.0 - time.monotonic()))
                if side.state() != "speaking":  # cut short before the patient spoke
                    result.cut_short += 1
                    result.failures.append(side.failure(f"true barge-in test, answer {i + 1}",
                                                        started, room.jumps - jumps))
                    continue
                said = time.monotonic()
                room.say(phrase)
                result.true_trials += 1
                at, status = side.answer_ended(started, args.answer_s + 20)
                if "patient speaking" in status and at > said:
                    result.true_detected += 1
                    result.latencies_s.append(at - said)
                    if at - said <= GOAL_SILENCED_S:
                        result.true_in_time += 1
                # Each trial on its own: the phrase's second half ("please wait", after a
                # pause the service's voice detector may take for its end) stops the
                # service's reply to "Stop" too. That belongs to this trial; the next one
                # starts once the phrase is over, in a new visit.
                time.sleep(max(0.0, said + len(phrase) / RATE + PHRASE_TAIL_S - time.monotonic()))
                side.to_idle()
            side.to_idle()
            result.fallbacks = metric(side.textfile, "voice_kiosk_aec_fallbacks_total") or 0.0
        except (TimeoutError, RuntimeError) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}\n{side.daemon.log_tail(10)}")
        finally:
            side.daemon.stop()
        result.rig_jumps = room.jumps
        if room.error:
            result.errors.append(f"echo rig: {room.error}")
    return result


def in_process(cpu_seconds: float) -> tuple[dict, float]:
    """The kiosk's canceller on the synthetic echo scene, in 100 ms frames as the daemon."""
    cand = aec_bench.Candidate("kiosk.audio.aec wrapper @24k/100ms", "kiosk.audio.aec",
                               24000, 100, aec_bench._kiosk_wrapper,
                               lookahead_frames=1)
    figures = aec_bench.quality(cand, aec_bench.build_scene())
    return figures, aec_bench.cpu_per_audio_s(cand, cpu_seconds, 3)


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None or value != value else f"{value:{spec}}{unit}"


def report(results: list[ModeResult], scene: dict, cpu: float) -> tuple[str, list[str]]:
    rows = [("", *[r.mode for r in results])]

    def row(name: str, cell) -> None:
        rows.append((name, *[cell(r) for r in results]))

    row("false barge-ins", lambda r: f"{r.false_barge_ins}/{r.answers}")
    row("  (answers cut short before the phrase)", lambda r: f"{r.cut_short}")
    row("true barge-ins detected", lambda r: f"{r.true_detected}/{r.true_trials}")
    row(f"  answer stopped <= {GOAL_SILENCED_S * 1000:.0f} ms",
        lambda r: f"{r.true_in_time}/{r.true_trials}")
    row("  phrase -> stopped, median",
        lambda r: fmt(statistics.median(r.latencies_s) * 1000 if r.latencies_s else None,
                      ".0f", " ms"))
    row("  phrase -> stopped, max",
        lambda r: fmt(max(r.latencies_s) * 1000 if r.latencies_s else None, ".0f", " ms"))
    row("ERLE, kiosk's own (median)",
        lambda r: fmt(statistics.median(r.erle_db) if r.erle_db else None, ".1f", " dB")
        if r.mode == "aec" else ("mic muted" if r.mode == "gate" else "0 dB"))
    row("canceller fallbacks", lambda r: f"{r.fallbacks:.0f}" if r.mode == "aec" else "-")
    row("echo rig: the echo moved (rig glitches)", lambda r: f"{r.rig_jumps}")
    row("idle: CPU-s per s", lambda r: fmt(r.idle and r.idle.per_second(r.idle.cpu_s), ".4f"))
    row("idle: wake-ups per s",
        lambda r: fmt(r.idle and r.idle.per_second(r.idle.switches), ".0f"))
    row("idle: RSS MiB / threads",
        lambda r: "n/a" if r.idle is None
        else f"{r.idle.end.rss_kib / 1024:.1f} / {r.idle.end.threads}")
    width = [max(len(str(c)) for c in col) for col in zip(*rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, width, strict=True)) for r in rows]
    lines.append("")
    lines.append(f"in-process, echo scene: ERLE {fmt(scene['erle_db'], '.1f', ' dB')} "
                 f"(p10 {fmt(scene['erle_p10_db'], '.1f', ' dB')}) from 2 s after the first "
                 f"answer audio; every window >= 25 dB after "
                 f"{fmt(scene['converge_s'], '.2f', ' s')}; canceller CPU {cpu:.4f} CPU-s per "
                 f"audio s ({os.cpu_count()} cores)")
    missed = []
    a = next((r for r in results if r.mode == "aec"), None)
    if a is not None:
        if a.false_barge_ins + a.cut_short > GOAL_FALSE:
            missed.append(f"false barge-ins {a.false_barge_ins}/{a.answers}, answers cut short "
                          f"before the phrase {a.cut_short} (goal 0)")
        if a.true_trials == 0 or a.true_in_time < GOAL_TRUE * a.true_trials:
            missed.append(f"true barge-ins in time {a.true_in_time}/{a.true_trials} "
                          f"(goal >= {GOAL_TRUE:.0%})")
        if a.errors:
            missed.append("the aec run had errors")
    if not scene["converge_s"] <= aec_bench.GOAL_CONVERGE_S:
        missed.append(f"time to 25 dB {fmt(scene['converge_s'], '.2f', ' s')} (goal <= 2 s)")
    if not scene["erle_db"] >= aec_bench.GOAL_ERLE_DB:
        missed.append(f"ERLE {fmt(scene['erle_db'], '.1f', ' dB')} (goal >= 25 dB)")
    if cpu > aec_bench.GOAL_CPU:
        missed.append(f"CPU {cpu:.4f} s/s (goal <= {aec_bench.GOAL_CPU})")
    for r in results:
        for failure in r.failures:
            lines.append(f"{r.mode}: stopped by itself: {failure}")
        for e in r.errors:
            lines.append(f"{r.mode}: {e}")
    lines.append("goals of issue 14 for aec: " +
                 ("all met" if not missed else "missed: " + "; ".join(missed)))
    return "\n".join(lines), missed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answers", type=int, default=20,
                    help="answers per mode for the false and for the true barge-ins")
    ap.add_argument("--answer-s", type=float, default=3.0, help="answer length, seconds")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated echo modes")
    ap.add_argument("--idle-s", type=float, default=20.0,
                    help="seconds of the daemon at rest measured per mode")
    ap.add_argument("--cpu-seconds", type=float, default=60.0,
                    help="audio seconds for the canceller's CPU figure")
    args = ap.parse_args(argv)
    interrupt_on_sigterm()
    reaper = Reaper()
    results = []
    try:
        for mode in args.modes.split(","):
            print(f"measuring echo_mode {mode} ...", file=sys.stderr, flush=True)
            results.append(run_mode(mode, args, reaper))
    finally:
        reaper.stop_all()
    print("measuring the canceller in-process ...", file=sys.stderr, flush=True)
    scene, cpu = in_process(args.cpu_seconds)
    text, missed = report(results, scene, cpu)
    print(f"echo rig: {ROOM.delay_ms:g} ms, RT60 {ROOM.rt60_s:g} s, echo {ROOM.echo_gain_db:+g} "
          f"dB (0 dB echo-to-speech), noise {ROOM.noise_dbfs} dBFS; {args.answers} answers "
          f"of {args.answer_s:g} s per mode and test\n")
    print(text)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

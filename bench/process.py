"""Whole-process benchmark: what `voice-kiosk run` costs the machine, measured from outside.

Run from the repository root (about 11 minutes with the defaults)::

    .venv/bin/python bench/process.py
    .venv/bin/python bench/process.py --idle-s 60 --visits 500      # longer
    .venv/bin/python bench/process.py --idle-s 2 --listen-s 2 --speak-s 2 --latency-runs 1 \\
        --warmup-visits 1 --visits 2 --rounds 1                        # a smoke run

The daemon runs as systemd starts it (`voice-kiosk run`, NOTIFY_SOCKET, WATCHDOG_USEC of the
unit's WatchdogSec=30) with the example configuration, cues and echo gate on; only what this
machine needs is changed, and the output lists those settings. The simulator runs in its own
process; sound goes through private PulseAudio null sinks (`kiosk.audio.virtual`). Every
figure comes from /proc (see `bench/procstat.py`) or from what the outside world saw: the
STATUS= datagrams, the simulator's records, timed recordings of the microphone and speaker.

Phases, in order: idle (after `--settle-s`), latencies (`--latency-runs` visits with a
question and a barge-in), listening and the naive client, speaking and the naive player,
then `--visits` visits for memory growth. Listening and speaking are measured in
`--rounds` rounds, each the kiosk's window and then the naive program's; the round whose
ratio is the median is shown and judged, and every round's ratio is printed: with one pair
of 20 s windows per run, the speaking ratio of the same code ranged from 0.38x to 0.55x over
four runs on this machine, mostly through the naive player's figure. The naive programs are
in `bench/naive.py`.
Exit status 1 when a goal of issue 13 is missed; the output says which.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import latency, phases, report  # noqa: E402
from bench.harness import (  # noqa: E402
    RATE,
    KioskDaemon,
    Reaper,
    bench_config,
    interrupt_on_sigterm,
    unit_environment,
)
from bench.procstat import python_thread_names, sample  # noqa: E402
from kiosk.audio.playback import BLOCK_MS  # noqa: E402
from kiosk.audio.virtual import MIC_DEVICE, SPEAKER_DEVICE, VirtualAudio  # noqa: E402
from kiosk.sim.remote import SimulatorProcess  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settle-s", type=float, default=5.0,
                   help="wait after READY before measuring (start-up settles)")
    p.add_argument("--idle-s", type=float, default=30.0, help="idle CPU window, seconds")
    p.add_argument("--listen-s", type=float, default=20.0,
                   help="listening CPU window (kiosk and naive client), seconds")
    p.add_argument("--speak-s", type=float, default=20.0,
                   help="answer length for the speaking figures (kiosk and naive player)")
    p.add_argument("--rounds", type=int, default=3,
                   help="listening and speaking: kiosk and naive windows measured in turn "
                        "this many times; the round with the median ratio is judged")
    p.add_argument("--latency-runs", type=int, default=10,
                   help="visits with a question and a barge-in, for the latencies")
    p.add_argument("--warmup-visits", type=int, default=20,
                   help="visits before the memory baseline is taken")
    p.add_argument("--visits", type=int, default=200, help="visits for the RSS growth")
    p.add_argument("--turn-every", type=int, default=25,
                   help="every N-th of those visits also asks a question (0: none)")
    p.add_argument("--threads-top", type=int, default=8, help="threads listed per phase")
    p.add_argument("--py-spy", default=_find_py_spy(),
                   help="py-spy, to name the daemon's Python threads (default: the venv's or "
                        "PATH's; it pauses the daemon a moment, only between measurements)")
    return p


def _find_py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args: argparse.Namespace, reaper: Reaper) -> int:
    print(f"voice-kiosk whole-process benchmark, {time.strftime('%Y-%m-%d %H:%M')}: "
          f"{_cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {_load()} at the start", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="kiosk-bench-"))
    reaper.on_stop(lambda: shutil.rmtree(workdir, ignore_errors=True))
    print(f"work files (the kiosk's config and log): {workdir}, removed at the end")
    rig = VirtualAudio()
    reaper.on_stop(rig.stop)  # registered first: an interrupted start is cleaned up too
    rig.start()
    sim = SimulatorProcess(stream_speed=4.0)
    reaper.on_stop(sim.stop)
    sim.start()
    key_file = workdir / "gateway-api-key"
    key_file.write_text(sim.api_key + "\n")
    key_file.chmod(0o600)
    config, changes = bench_config(sim.gateway_url, key_file, MIC_DEVICE, SPEAKER_DEVICE)
    print("configuration: config/voice-kiosk.yaml (cues on, echo gate on, every other "
          "default kept) except:")
    for key, value, why in changes:
        shown = "<file>" if key.endswith("_file") else value
        print(f"  {key}: {shown}  ({why})")
    unit_env = " ".join(f"{k}={v}" for k, v in unit_environment().items()) or "none"
    print(f"environment: the unit's Environment= ({unit_env}), its WatchdogSec=30; the "
          "modules byte-compiled for it, as install.sh does")
    print("simulator: its own process; answers streamed 4x faster than real time "
          "(stream_speed 4), 100 ms per delta", flush=True)

    daemon = KioskDaemon(config, workdir, rig.env, reaper)
    ctx = phases.Ctx(daemon, rig, sim, reaper, key_file, workdir)
    try:
        daemon.wait_ready(60)
        time.sleep(args.settle_s)  # a measurement condition: start-up has settled
        first = sample(daemon.pid)
        results = report.Results(first.rss_kib, first.threads,
                                 phases.idle(ctx, args.idle_s))
        _progress("idle", results.idle.wall_s)
        names = python_thread_names(daemon.pid, args.py_spy)
        if args.latency_runs > 0:
            block = RATE * BLOCK_MS // 1000  # the kiosk's output block, for the reference
            results.latencies = latency.measure(ctx, args.latency_runs, block)
            _progress("latencies", args.latency_runs)
        results.listening, results.naive_client, results.listening_ratios = \
            report.median_round([(phases.listening(ctx, args.listen_s),
                                  phases.naive_client(ctx, args.listen_s))
                                 for _ in range(args.rounds)])
        results.naive_client_rss_kib = results.naive_client.window.end.rss_kib
        results.listening_rig_pace = phases.listening(ctx, args.listen_s,
                                                      phases.RIG_LATENCY_MS)
        results.naive_client_rig_pace = phases.naive_client(ctx, args.listen_s,
                                                            phases.RIG_LATENCY_MS)
        _progress("listening", args.listen_s)
        results.speaking, results.naive_player, results.speaking_ratios = \
            report.median_round([(phases.speaking(ctx, args.speak_s),
                                  phases.naive_player(ctx, args.speak_s))
                                 for _ in range(args.rounds)])
        results.naive_player_rss_kib = results.naive_player.window.end.rss_kib
        _progress("speaking", args.speak_s)
        if args.visits > 0:
            results.endurance = phases.visits(ctx, args.warmup_visits, args.visits,
                                              args.turn_every, first.threads)
            _progress("visits", args.visits)
        results.peak_rss_kib = sample(daemon.pid, threads=False).hwm_kib
        names = {**python_thread_names(daemon.pid, args.py_spy), **names}
    except BaseException:
        print(f"\nbenchmark failed; the kiosk's log ends with:\n{daemon.log_tail()}",
              file=sys.stderr)
        raise
    return _print(args, results, names)


def _progress(what: str, amount: float) -> None:
    print(f"  ... {what} done ({amount:g}), load average {_load()}", file=sys.stderr,
          flush=True)


def _print(args: argparse.Namespace, r: report.Results, names: dict[int, str]) -> int:
    print(f"\nload average at the end: {_load()}\n")
    for line in report.table(r):
        print(line)
    name = "voice-kiosk"
    print("\nthread names: " + ("Python's, from py-spy" if names else
                                "what each waits in, from /proc (install py-spy to see "
                                "Python's thread names)"))
    for title, window, seconds in (
            ("idle", r.idle, r.idle.wall_s),
            ("listening", r.listening.window if r.listening else None, args.listen_s),
            ("speaking", r.speaking.window if r.speaking else None, args.speak_s)):
        if window is not None:
            for line in report.thread_breakdown(title, window, seconds, name, names,
                                                args.threads_top):
                print(line)
    print("\ngoals (issue 13):")
    missed = []
    for goal in report.goals(r):
        verdict = "met" if goal.met else "MISSED"
        relation = ("<" if goal.strict else "<=") if goal.below else ">="
        print(f"  {verdict:<7}{goal.name}: {goal.value:.4g} {goal.unit} "
              f"(goal {relation} {goal.limit:g} {goal.unit})")
        if not goal.met:
            missed.append(goal.name)
    print("goals: all met" if not missed else f"goals: MISSED {len(missed)}: "
          + "; ".join(missed))
    return 0 if not missed else 1


def main() -> int:
    parser = _parser()
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    interrupt_on_sigterm()
    reaper = Reaper()
    try:
        return run(args, reaper)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the benchmark started", file=sys.stderr)
        return 130
    finally:
        reaper.stop_all()


if __name__ == "__main__":
    sys.exit(main())

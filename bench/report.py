"""The benchmark's table, its per-thread breakdown, and the goals of issue 13 judged."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.latency import Latencies
from bench.phases import Endurance, Measured, median
from bench.procstat import PULSE_CLIENT_THREAD, Window, describe_thread

MIB = 1024.0


@dataclass
class Results:
    startup_rss_kib: int
    startup_threads: int
    idle: Window
    listening: Measured | None = None  # the median round's pair (see `median_round`)
    naive_client: Measured | None = None
    listening_ratios: list[float] = field(default_factory=list)  # every round's, in order
    listening_rig_pace: Measured | None = None  # the microphone's sink at 5 ms: reported
    naive_client_rig_pace: Measured | None = None
    speaking: Measured | None = None
    naive_player: Measured | None = None
    speaking_ratios: list[float] = field(default_factory=list)
    naive_client_rss_kib: int = 0
    naive_player_rss_kib: int = 0
    latencies: Latencies | None = None
    endurance: Endurance | None = None
    peak_rss_kib: int = 0


@dataclass
class Goal:
    name: str
    value: float
    limit: float
    unit: str
    below: bool = True  # met when value <= limit (or < limit when strict)
    strict: bool = False

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        if self.below:
            return self.value < self.limit if self.strict else self.value <= self.limit
        return self.value >= self.limit


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{1000 * median(values):.1f} / {1000 * max(values):.1f}"


def _ratio(kiosk: Measured | None, naive: Measured | None) -> float:
    if kiosk is None or naive is None or naive.cpu_per_audio_s == 0:
        return float("nan")
    return kiosk.cpu_per_audio_s / naive.cpu_per_audio_s


def median_round(pairs: list[tuple[Measured, Measured]]
                 ) -> tuple[Measured, Measured, list[float]]:
    """The (kiosk, naive) pair whose ratio is the median of the rounds (the upper one of
    the middle two when the count is even), and every round's ratio in order.

    The pair is judged whole, not the median kiosk over the median naive window: each round
    measures both sides back to back, under the same conditions of the machine."""
    if not pairs:
        raise ValueError("no rounds measured")
    ratios = [_ratio(kiosk, naive) for kiosk, naive in pairs]
    middle = sorted(range(len(pairs)), key=lambda i: ratios[i])[len(pairs) // 2]
    return pairs[middle][0], pairs[middle][1], ratios


def goals(r: Results) -> list[Goal]:
    out = [Goal("idle CPU", r.idle.cpu_s / r.idle.wall_s, 0.002, "CPU-s/s")]
    if r.listening is not None:
        out.append(Goal("listening vs the naive client", _ratio(r.listening, r.naive_client),
                        0.5, "x"))
    if r.speaking is not None:
        out.append(Goal("speaking vs the naive player", _ratio(r.speaking, r.naive_player),
                        0.5, "x"))
    steady = max(r.startup_rss_kib, r.endurance.rss_after_kib if r.endurance else 0)
    out.append(Goal("RSS at rest (after start-up and after the visits)", steady / MIB, 60,
                    "MiB"))
    if r.endurance is not None:
        e = r.endurance
        out.append(Goal(f"RSS growth over {e.visits} visits",
                        (e.rss_after_kib - e.rss_before_kib) / MIB, 2, "MiB", strict=True))
    lat = r.latencies
    if lat is not None and lat.press_connecting:
        out.append(Goal("words from 300 ms after the press received (worst visit)",
                        100 * min(lat.words_received), 100, "%", below=False))
        out.append(Goal("press -> connecting (median)", 1000 * median(lat.press_connecting),
                        20, "ms", strict=True))
        out.append(Goal("end of speech -> first answer heard, less the simulator (median)",
                        1000 * median(lat.kiosk_answer_share()), 60, "ms", strict=True))
        out.append(Goal("barge-in -> silence, the kiosk's share (median)",
                        1000 * median(lat.kiosk_barge_share()), 30, "ms", strict=True))
    return out


def _row(name: str, kiosk: str, naive: str = "", ratio: str = "", goal: str = "") -> str:
    return f"{name:<44}{kiosk:>14}{naive:>12}{ratio:>9}  {goal}"


def table(r: Results) -> list[str]:
    lines = [_row("measure", "kiosk", "naive", "ratio", "goal"), "-" * 100]
    idle = r.idle
    lines.append(_row(f"idle: CPU-s per s ({idle.wall_s:.0f} s)", f"{idle.cpu_s / idle.wall_s:.4f}",
                      "", "", "<= 0.002"))
    lines.append(_row("idle: wake-ups per s", f"{idle.switches / idle.wall_s:.0f}"))
    lines.append(_row("idle: threads", str(idle.end.threads)))
    for label, kiosk, naive, ratios, goal in (
            ("listening", r.listening, r.naive_client, r.listening_ratios,
             "<= 0.5x naive client"),
            ("speaking", r.speaking, r.naive_player, r.speaking_ratios,
             "<= 0.5x naive player")):
        if kiosk is None or naive is None:
            continue
        ratio = _ratio(kiosk, naive)
        rounds = f"{len(ratios)} x " if len(ratios) > 1 else ""
        lines.append(_row(f"{label}: CPU-s per audio s ({rounds}{kiosk.audio_s:.0f} s)",
                          f"{kiosk.cpu_per_audio_s:.4f}", f"{naive.cpu_per_audio_s:.4f}",
                          f"{ratio:.2f}x", goal))
        if len(ratios) > 1:
            lines.append(_row("  each round's ratio (the median judged)", "", "", "",
                              " ".join(f"{x:.2f}x" for x in ratios)))
        k_client, n_client = (m.window.cpu_s_named(PULSE_CLIENT_THREAD) / m.audio_s
                              for m in (kiosk, naive))
        lines.append(_row("  of which PulseAudio client threads", f"{k_client:.4f}",
                          f"{n_client:.4f}"))
        k_rest, n_rest = kiosk.cpu_per_audio_s - k_client, naive.cpu_per_audio_s - n_client
        lines.append(_row("  the other threads", f"{k_rest:.4f}",
                          f"{n_rest:.4f}", f"{k_rest / n_rest:.2f}x" if n_rest > 0 else "",
                          "(reported)"))
        lines.append(_row(f"{label}: wake-ups per s", f"{kiosk.wakeups_per_s:.0f}",
                          f"{naive.wakeups_per_s:.0f}"))
        lines.append(_row(f"{label}: threads", str(kiosk.window.end.threads),
                          str(naive.window.end.threads)))
        if label == "listening" and r.listening_rig_pace and r.naive_client_rig_pace:
            fast_k, fast_n = r.listening_rig_pace, r.naive_client_rig_pace
            lines.append(_row("listening, microphone sink at 5 ms",
                              f"{fast_k.cpu_per_audio_s:.4f}", f"{fast_n.cpu_per_audio_s:.4f}",
                              f"{_ratio(fast_k, fast_n):.2f}x", "(reported)"))
    naive_rss = max(r.naive_client_rss_kib, r.naive_player_rss_kib)
    lines.append(_row("RSS after start-up (naive: running), MiB",
                      f"{r.startup_rss_kib / MIB:.1f}",
                      f"{naive_rss / MIB:.1f}" if naive_rss else "", "", "<= 60"))
    if r.peak_rss_kib:
        lines.append(_row("peak RSS (VmHWM) over the run, MiB", f"{r.peak_rss_kib / MIB:.1f}"))
    if (e := r.endurance) is not None:
        lines.append(_row(f"RSS at rest after {e.visits} visits, MiB",
                          f"{e.rss_after_kib / MIB:.1f}", "", "", "<= 60"))
        lines.append(_row(f"RSS growth over {e.visits} visits, MiB",
                          f"{(e.rss_after_kib - e.rss_before_kib) / MIB:+.2f}", "", "", "< 2"))
        lines.append(_row(f"threads / fds before -> after {e.visits} visits",
                          f"{e.threads_before}->{e.threads_after} / {e.fds_before}->{e.fds_after}"))
    lat = r.latencies
    if lat is not None and lat.press_connecting:
        n = len(lat.press_connecting)
        lines += ["", _row(f"latencies over {n} visits (median / max)", "ms")]
        lines.append(_row("press -> connecting (STATUS=)", _ms(lat.press_connecting), "", "",
                          "< 20"))
        lines.append(_row("press -> first audio sent (default cues)",
                          _ms(lat.press_first_audio), "", "", "(reported)"))
        lines.append(_row("speech began after the press", _ms(lat.words_offset), "", "",
                          "(300 planned)"))
        lines.append(_row("  words received from (after the press)",
                          _ms(lat.words_kept_from)))
        lines.append(_row("words from 300 ms on received, % (min)",
                          f"{100 * min(lat.words_received):.1f}", "", "", "100"))
        lines.append(_row("end of speech -> first answer sample", _ms(lat.end_of_speech)))
        lines.append(_row("  of which the simulator's wait", _ms(lat.sim_wait)))
        lines.append(_row("  of which the speaker path (reference)",
                          f"{1000 * lat.speaker_path:.1f}"))
        lines.append(_row("  less the simulator's wait (heard)", _ms(lat.kiosk_answer_share()),
                          "", "", "< 60"))
        lines.append(_row("barge-in -> silence on the speaker", _ms(lat.barge_in)))
        lines.append(_row("  the kiosk's share (less the speaker path)",
                          _ms(lat.kiosk_barge_share()), "", "", "< 30"))
    return lines


def thread_breakdown(title: str, window: Window, seconds: float, process_name: str,
                     names: dict[int, str], top: int = 8) -> list[str]:
    """Where a window's CPU and wake-ups went, thread by thread (busiest first)."""
    lines = [f"{title}: per thread (CPU-s per s, wake-ups per s)"]
    for t, cpu, switches in window.threads()[:top]:
        what = describe_thread(window.end.pid, t, process_name, names)
        lines.append(f"  {t.tid:>8} {t.comm:<15} {cpu / seconds:8.4f} {switches / seconds:8.0f}"
                     f"  {what}")
    return lines

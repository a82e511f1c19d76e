"""Latencies of the real daemon, seen from outside: per visit, a patient who starts talking
300 ms after the press, a question, its answer, and a barge-in by button.

Clocks: the benchmark, the simulator and the recordings all use CLOCK_MONOTONIC (one clock
for every process on the machine). The moments come from:

* the press: when the benchmark sent SIGUSR1;
* STATUS=: when the datagram reached the benchmark's NOTIFY_SOCKET;
* the simulator: `speech_stopped_at` is the simulator's own stamp; "first audio sent" and
  "first answer delta" are when the benchmark learnt of them from the simulator process
  (its change reports arrive within about a millisecond; the delay of one report,
  speech_stopped's, is measured and taken off the simulator's wait);
* the microphone and the speaker: timed recordings of the null sinks' monitors
  (`harness.TimedRecorder`).

What reaches the speaker includes the speaker path itself (PortAudio, the ALSA PulseAudio
plugin, the sound server): the same delay any program would have. It is measured in the same
run with a plain PortAudio callback stream of the kiosk's output block (`naive.py clicks`,
20 ms), from its callback to the speaker, and taken off the barge-in to give the kiosk's
share: the moment its playback callback handed the silence over, which is where the README's
goal is defined. The answer's latency is judged *with* the speaker path (heard, less the
simulator's wait): the kiosk opens its speaker stream for the answer, so no queued silence
precedes the first sample and a running stream's path would over-correct.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import speech
from bench.harness import RATE, TimedRecorder, end_process
from bench.phases import Ctx, newest_index, sleep_until
from kiosk.audio.virtual import SPEAKER_DEVICE
from kiosk.sim import silence
from kiosk.sim.remote import SimulatorProcess

WORDS_AFTER_S = 0.3  # the patient starts talking this long after the press
WORDS_TOLERANCE_S = 0.01  # one 10 ms window: how exactly the start of the words is known
PAD_S = 0.5  # silence played into the microphone before the words
BARGE_AFTER_S = 0.5  # the answer plays this long before the patient presses to interrupt


@dataclass
class Latencies:
    speaker_path: float = float("nan")
    press_connecting: list[float] = field(default_factory=list)
    press_first_audio: list[float] = field(default_factory=list)
    words_offset: list[float] = field(default_factory=list)
    words_received: list[float] = field(default_factory=list)
    words_kept_from: list[float] = field(default_factory=list)
    end_of_speech: list[float] = field(default_factory=list)
    sim_wait: list[float] = field(default_factory=list)
    barge_in: list[float] = field(default_factory=list)

    def kiosk_answer_share(self) -> list[float]:
        """Heard at the speaker, less the simulator's wait (the speaker path included)."""
        return [total - wait
                for total, wait in zip(self.end_of_speech, self.sim_wait, strict=True)]

    def kiosk_barge_share(self) -> list[float]:
        return [total - self.speaker_path for total in self.barge_in]


def speaker_path(ctx: Ctx, spk: TimedRecorder, block: int) -> float:
    """Median delay from a plain PortAudio callback to the speaker (the kiosk is idle)."""
    proc = ctx.spawn_naive("clicks", "--device", SPEAKER_DEVICE, "--block", str(block))
    try:
        times = json.loads(ctx.read_line(proc, 40))
    finally:
        end_process(proc)
    heard = spk.wait_until(times[-1] + 0.3)
    delays = []
    for t in times:
        first = speech.first_sound(heard, spk.index_at(t - 0.1))
        if first is not None:
            delays.append(spk.time_of(first) - t)
    if not delays:
        raise RuntimeError("the reference clicks never reached the speaker")
    return statistics.median(delays)


def _sending(sim: SimulatorProcess, before: int) -> Any:
    """The visit's connection once its first audio arrived (a connection newer than
    `before`), else None."""
    conn = sim.last_connection
    if conn is None or conn.index <= before or not conn.events_of("input_audio_buffer.append"):
        return None
    return conn


def _answering(conn: Any) -> bool:
    return any(t.endswith("output_audio.delta") for t in conn.server_types())


def measure(ctx: Ctx, runs: int, block: int) -> Latencies:
    d, sim, rig = ctx.daemon, ctx.sim, ctx.rig
    out = Latencies()
    mic = TimedRecorder(rig.env, "micfeed.monitor", ctx.reaper)
    spk = TimedRecorder(rig.env, "spk.monitor", ctx.reaper)
    ref = speech.words(2.0)
    feed = np.concatenate([silence(PAD_S), ref, silence(1.5)])

    def onset(spawned: float) -> float:
        """When the words reached the microphone, from its recording."""
        rec = mic.wait_until(spawned + PAD_S + 2.5, timeout_s=10)
        lo = max(0, mic.index_at(spawned))
        return mic.time_of(lo + speech.locate(rec[lo:mic.index_at(spawned + 4.0)], ref))

    try:
        mic.wait_ready()
        spk.wait_ready()
        out.speaker_path = speaker_path(ctx, spk, block)
        sim.knobs.answer_s = 3.0
        spawned = time.monotonic()  # calibration, kiosk idle: how late playing starts
        rig.play_into_mic(feed, RATE).wait(10)
        lead_s = onset(spawned) - spawned - PAD_S
        for _ in range(runs):
            before = newest_index(sim)
            spawned = time.monotonic()
            rig.play_into_mic(feed, RATE)
            sleep_until(spawned + lead_s + PAD_S - WORDS_AFTER_S)
            pressed = d.press()
            conn = sim.wait_for(functools.partial(_sending, sim, before), 15)
            out.press_first_audio.append(time.monotonic() - pressed)
            out.press_connecting.append(d.wait_state("connecting", pressed) - pressed)
            stopped_at = sim.wait_for(functools.partial(getattr, conn, "speech_stopped_at"),
                                      15)[-1]
            report_delay = time.monotonic() - stopped_at
            sim.wait_for(functools.partial(_answering, conn), 15)
            out.sim_wait.append(max(0.0, time.monotonic() - stopped_at - report_delay))
            talking = d.wait_state("speaking", pressed, 15)
            sleep_until(talking + BARGE_AFTER_S)
            barge = d.press()
            d.wait_state("listening", barge)
            heard = spk.wait_until(barge + 0.3)  # before the end chime of the next press
            ended = d.press()
            d.wait_state("idle", ended)

            said = onset(spawned)
            lead_s = said - spawned - PAD_S
            out.words_offset.append(said - pressed)
            cut = int(round((pressed + WORDS_AFTER_S + WORDS_TOLERANCE_S - said) * RATE))
            fraction, offset = speech.fraction_received(conn.audio, ref, cut)
            out.words_received.append(fraction)
            # The received audio starts `offset` samples before the words (after, if < 0).
            out.words_kept_from.append(said - pressed + max(0, -offset) / RATE)
            first = speech.first_sound(heard, spk.index_at(stopped_at))
            quiet = speech.silent_from(heard, spk.index_at(barge))
            if first is None or quiet is None:
                raise RuntimeError("the speaker recording has no answer, or no silence after "
                                   "the barge-in")
            out.end_of_speech.append(spk.time_of(first) - stopped_at)
            out.barge_in.append(spk.time_of(quiet) - barge)
    finally:
        mic.stop()
        spk.stop()
        sim.knobs.answer_s = 1.5
    return out

"""Metrics textfile, parsed the way Prometheus parses it."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from kiosk.service.metrics import Metrics
from kiosk.settings import MetricsSettings
from kiosk.states import State, StateChange


def samples(path: Path) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "kiosk"))
            found[(s.name, labels)] = s.value
    return found


def play(metrics: Metrics, *steps: tuple[State, float, str | None], visit: str = "v-1"):
    old = State.IDLE
    for new, at, kind in steps:
        metrics.on_state_change(StateChange(old, new, "", visit, at, kind))
        old = new


def test_a_visit_in_numbers(tmp_path: Path):
    path = tmp_path / "voice-kiosk.prom"
    metrics = Metrics(MetricsSettings(textfile=str(path)), "bed12")
    metrics.count_press()
    play(metrics,
         (State.CONNECTING, 10.0, None), (State.LISTENING, 10.4, None),
         (State.THINKING, 12.0, None), (State.SPEAKING, 12.9, None),
         (State.LISTENING, 15.0, None), (State.THINKING, 16.0, None),
         (State.SPEAKING, 16.5, None), (State.IDLE, 20.0, None))
    metrics.count_press()
    play(metrics, (State.CONNECTING, 30.0, None), (State.ERROR, 31.0, "network"),
         (State.IDLE, 35.0, None), visit="v-2")
    metrics.count_reconnect()
    metrics.add_counter("audio_overruns", "Microphone audio lost.", lambda: 3)
    metrics.add_counter("audio_underruns", "Speaker starved.", lambda: 5)
    assert metrics.write()

    got = samples(path)
    assert got[("voice_kiosk_visits_total", ())] == 2
    assert got[("voice_kiosk_button_presses_total", ())] == 2
    assert got[("voice_kiosk_reconnects_total", ())] == 1
    assert got[("voice_kiosk_audio_overruns_total", ())] == 3
    assert got[("voice_kiosk_audio_underruns_total", ())] == 5
    assert got[("voice_kiosk_errors_total", (("kind", "network"),))] == 1
    assert got[("voice_kiosk_errors_total", (("kind", "auth"),))] == 0
    assert math.isclose(got[("voice_kiosk_press_to_listening_last_seconds", ())], 0.4)
    assert math.isclose(got[("voice_kiosk_answer_latency_last_seconds", ())], 0.5)
    assert math.isclose(got[("voice_kiosk_answer_latency_p95_seconds", ())], 0.9)
    assert got[("voice_kiosk_state", (("state", "idle"),))] == 1
    assert got[("voice_kiosk_state", (("state", "error"),))] == 0
    assert got[("voice_kiosk_uptime_seconds", ())] >= 0
    assert got[("voice_kiosk_info", (("version", __import__("kiosk").__version__),))] == 1


def test_a_reconnect_is_not_a_new_visit(tmp_path: Path):
    path = tmp_path / "m.prom"
    metrics = Metrics(MetricsSettings(textfile=str(path)), "k")
    play(metrics, (State.CONNECTING, 1.0, None), (State.LISTENING, 1.5, None),
         (State.CONNECTING, 5.0, None), (State.LISTENING, 5.2, None))
    metrics.close()
    got = samples(path)
    assert got[("voice_kiosk_visits_total", ())] == 1
    assert math.isclose(got[("voice_kiosk_press_to_listening_last_seconds", ())], 0.5)


def test_latencies_are_nan_before_the_first_sample(tmp_path: Path):
    path = tmp_path / "m.prom"
    Metrics(MetricsSettings(textfile=str(path)), "k").close()
    assert math.isnan(samples(path)[("voice_kiosk_answer_latency_p95_seconds", ())])


def test_rewritten_periodically_and_atomically(tmp_path: Path):
    path = tmp_path / "m.prom"
    metrics = Metrics(MetricsSettings(textfile=str(path), interval_s=0.05), "k")
    metrics.start()
    try:
        first = samples(path)[("voice_kiosk_uptime_seconds", ())]  # written at start()
        metrics.count_press()
        deadline = time.monotonic() + 5
        while samples(path)[("voice_kiosk_button_presses_total", ())] != 1:
            assert time.monotonic() < deadline, "metrics file not rewritten within 5 s"
            time.sleep(0.02)
        assert samples(path)[("voice_kiosk_uptime_seconds", ())] > first
    finally:
        metrics.close()
    assert os.listdir(tmp_path) == ["m.prom"]  # no temporary files left behind


def test_disabled_without_textfile(tmp_path: Path):
    metrics = Metrics(MetricsSettings(textfile=None), "k")
    metrics.start()
    metrics.count_press()
    assert metrics.write() is False
    metrics.close()
    assert metrics._thread is None


def test_unwritable_directory_is_reported_not_raised(tmp_path: Path):
    metrics = Metrics(MetricsSettings(textfile=str(tmp_path / "missing" / "m.prom")), "k")
    assert metrics.write() is False
    metrics.close()


def test_a_counter_kept_elsewhere_continues_across_a_reload(tmp_path: Path):
    path = tmp_path / "m.prom"
    metrics = Metrics(MetricsSettings(textfile=str(path)), "k")
    first = [7]
    metrics.add_counter("audio_underruns", "Speaker starved.", lambda: first[0])
    assert metrics.write()
    metrics.add_counter("audio_underruns", "Speaker starved.", lambda: 2)  # new streams
    assert metrics.write()
    assert samples(path)[("voice_kiosk_audio_underruns_total", ())] == 9  # 7 + 2, not 2


def test_the_echo_mode_and_the_cancellers_figures(tmp_path: Path):
    from kiosk.audio.aec import AecStats
    from kiosk.audio.echo import EchoStats

    path = tmp_path / "m.prom"
    metrics = Metrics(MetricsSettings(textfile=str(path)), "k")
    now = [EchoStats("aec", "aec", AecStats("active", 31.5, 62.0, True, 4.0, 300, 20), 1)]
    metrics.set_echo_source(lambda: now[0])
    assert metrics.write()
    got = samples(path)
    assert got[("voice_kiosk_echo_mode", (("mode", "aec"),))] == 1
    assert got[("voice_kiosk_echo_mode", (("mode", "gate"),))] == 0
    assert got[("voice_kiosk_aec_state", (("state", "active"),))] == 1
    assert got[("voice_kiosk_aec_state", (("state", "failed"),))] == 0
    assert got[("voice_kiosk_aec_erle_db", ())] == 31.5
    assert math.isclose(got[("voice_kiosk_aec_delay_seconds", ())], 0.062)
    assert got[("voice_kiosk_aec_fallbacks_total", ())] == 1

    # aec configured, the library missing: the gate runs, the canceller's figures are NaN.
    metrics.set_echo_source(lambda: EchoStats("aec", "gate", None, 0))  # a reload
    assert metrics.write()
    got = samples(path)
    assert got[("voice_kiosk_echo_mode", (("mode", "gate"),))] == 1
    assert got[("voice_kiosk_echo_mode", (("mode", "aec"),))] == 0
    assert not any(v for (name, _), v in got.items() if name == "voice_kiosk_aec_state")
    assert math.isnan(got[("voice_kiosk_aec_erle_db", ())])
    assert math.isnan(got[("voice_kiosk_aec_delay_seconds", ())])
    assert got[("voice_kiosk_aec_fallbacks_total", ())] == 1  # continues across the reload


def test_no_echo_figures_without_an_audio_engine(tmp_path: Path):
    path = tmp_path / "m.prom"
    metrics = Metrics(MetricsSettings(textfile=str(path)), "k")
    assert metrics.write()
    assert not any(name.startswith("voice_kiosk_aec") for name, _ in samples(path))

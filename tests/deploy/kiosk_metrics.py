"""Metrics files written by the kiosk's own code, to check alert rules and dashboards against.

Three kiosks: two healthy ones that had a day of visits (one with a failed one), built with
the kiosk's assembly (its audio counters, its part names) and driven through every state,
the first with a passed remote test call and a refused one, the second never tested;
and one started for real with no sound devices and no gateway, so its own code reports the
missing devices, holds `error` and fails the test call asked of it. The files are parsed the
way Prometheus parses them (prometheus_client's parser), and can be turned into promtool input
series with the labels a scrape through node_exporter adds (`instance`, `job`) and
node_exporter's own series.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from kiosk import events as ev
from kiosk.assembly import Kiosk
from kiosk.settings import (
    AudioSettings,
    GpioSettings,
    KioskSettings,
    MetricsSettings,
    NurseCallSettings,
    Settings,
)
from kiosk.states import State, StateChange
from kiosk.test_call.call import TestCallResult
from kiosk.test_call.report import TestCallReports

HEALTHY = ("ward3-bed12", "ward3-bed14")
BROKEN = "ward3-bed16"
KIOSKS = (*HEALTHY, BROKEN)
JOB = "voice-kiosk"
TEXTFILE = "/var/lib/prometheus/node-exporter/voice-kiosk.prom"
# What node_exporter's textfile collector adds to the kiosk's own series.
NODE_EXPORTER_METRICS = frozenset({"node_textfile_mtime_seconds", "node_textfile_scrape_error"})


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def instance_of(kiosk_id: str) -> str:
    return f"10.20.3.{12 + 2 * KIOSKS.index(kiosk_id)}:9100"


def _settings(kiosk_id: str, textfile: Path) -> Settings:
    # No sound devices here (the healthy kiosks are told theirs are ready, as the audio
    # engine does), mock GPIO pins, and no gateway.url. The first kiosk has a nurse call
    # relay and an assistive switch, so its file has the nurse call's families too.
    bedside = dict(switch_pin=27, switch_role="nurse_call",
                   nurse_call=NurseCallSettings(pin=22)) if kiosk_id == HEALTHY[0] else {}
    return Settings(kiosk=KioskSettings(id=kiosk_id),
                    metrics=MetricsSettings(textfile=str(textfile)),
                    gpio=GpioSettings(pin_factory="mock", **bedside),  # type: ignore[arg-type]
                    audio=AudioSettings(input_device="no-such-microphone",
                                        output_device="no-such-speaker"))


def _visit(kiosk: Kiosk, visit_id: str, at: float, error_kind: str | None = None) -> None:
    """One press and the state changes the controller reports for it."""
    kiosk.press(ev.ButtonPressed(source="test"))
    if error_kind is None:
        steps = [(State.CONNECTING, 0.0), (State.LISTENING, 0.4), (State.THINKING, 2.0),
                 (State.SPEAKING, 2.9), (State.LISTENING, 6.0), (State.THINKING, 8.0),
                 (State.SPEAKING, 8.6), (State.IDLE, 12.0)]
    else:
        steps = [(State.CONNECTING, 0.0), (State.ERROR, 60.0), (State.IDLE, 65.0)]
    old = State.IDLE
    for new, offset in steps:
        kiosk.metrics.on_state_change(StateChange(
            old, new, "", visit_id, at + offset, error_kind if new is State.ERROR else None))
        old = new


def _reports(kiosk: Kiosk, tmp: Path) -> TestCallReports:
    """The daemon's test-call reporter, exported with the kiosk's metrics."""
    settings = kiosk.settings
    reports = TestCallReports(replace(settings.test_call, result_file=str(tmp)),
                              settings.kiosk.id)
    kiosk.metrics.add_families(reports.families)
    return reports


def healthy_kiosk(kiosk_id: str, textfile: Path, tested: bool) -> str:
    kiosk = Kiosk(_settings(kiosk_id, textfile))
    reports = _reports(kiosk, textfile.with_suffix(".test-call.json"))
    try:
        kiosk._start_gpio()  # the mock pins open: gpio works
        kiosk._on_audio("ready", "microphone and speaker open")  # as the audio engine says
        for n in range(5):
            _visit(kiosk, f"{kiosk_id}-{n}", at=100.0 * n)
        _visit(kiosk, f"{kiosk_id}-5", at=600.0, error_kind="network")
        kiosk.metrics.count_reconnect()
        if kiosk.nurse is not None:  # a patient called a nurse with the switch
            kiosk.nurse.request("switch")
            deadline = time.monotonic() + 5.0
            while not kiosk.nurse.active:
                assert time.monotonic() < deadline, "the nurse request never latched"
                time.sleep(0.01)  # polling the request's owner with a deadline
        if tested:  # what a test call reports when it passed, and when a patient came first
            now = time.time()
            reports.finished(TestCallResult(
                "test-0a1b2c", "ok", "", now - 6.0, now,
                {"grant": 0.21, "link": 0.64, "first_answer_audio": 3.9, "total": 5.8},
                0.7, 1900, "synthetic voice"))
            reports.finished(TestCallResult(
                "test-3d4e5f", "refused", "a patient is using the kiosk (state listening)",
                now, now))
        assert kiosk.metrics.write()
    finally:
        kiosk.close()
        reports.close()
    return textfile.read_text()


def broken_kiosk(kiosk_id: str, textfile: Path, timeout_s: float = 20.0) -> str:
    kiosk = Kiosk(_settings(kiosk_id, textfile))
    reports = _reports(kiosk, textfile.with_suffix(".test-call.json"))
    try:
        kiosk.start()  # no devices, no gateway.url: the kiosk's own code reports both
        deadline = time.monotonic() + timeout_s
        while not _in_error(kiosk):
            if time.monotonic() > deadline:
                raise AssertionError("the kiosk without devices never showed error")
            time.sleep(0.05)
        kiosk.test_call(reports)  # as SIGUSR2 asks: its controller fails it at once
        while not reports.families():
            if time.monotonic() > deadline:
                raise AssertionError("the kiosk without devices gave no test call result")
            time.sleep(0.05)
    finally:
        kiosk.close()  # the last write
        reports.close()
    return textfile.read_text()


def _in_error(kiosk: Kiosk) -> bool:
    for family in kiosk.metrics.families():
        if family.name.endswith("_state"):
            return any(labels.get("state") == "error" and value == 1
                       for labels, value in family.samples)
    return False


def parse(text: str) -> list[Sample]:
    return [Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def write_fleet(folder: Path) -> dict[str, list[Sample]]:
    """kiosk id -> the samples of the file the kiosk's code wrote."""
    fleet = {}
    for kiosk_id in KIOSKS:
        path = folder / f"{kiosk_id}.prom"
        text = broken_kiosk(kiosk_id, path) if kiosk_id == BROKEN else \
            healthy_kiosk(kiosk_id, path, tested=kiosk_id == HEALTHY[0])
        fleet[kiosk_id] = parse(text)
    return fleet


def _value(v: float, samples: int) -> str:
    """promtool's series notation for a value held for `samples` + 1 samples."""
    if math.isnan(v):
        return f"NaN+0x{samples}"
    return f"{v:.6f}+0x{samples}"


def _series(name: str, labels: dict[str, str]) -> str:
    text = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{text}}}"


def promtool_series(fleet: dict[str, list[Sample]], minutes: int) -> list[dict[str, str]]:
    """The fleet's files as scraped every minute for `minutes` minutes: every value held,
    the textfile rewritten all along, node_exporter reading it fine."""
    out = []
    for kiosk_id, samples in fleet.items():
        target = {"instance": instance_of(kiosk_id), "job": JOB}
        for s in samples:
            out.append({"series": _series(s.name, {**s.labels, **target}),
                        "values": _value(s.value, minutes)})
        out.append({"series": _series("node_textfile_mtime_seconds",
                                      {"file": TEXTFILE, **target}),
                    "values": f"0+60x{minutes}"})
        out.append({"series": _series("node_textfile_scrape_error", target),
                    "values": f"0x{minutes}"})
    return out

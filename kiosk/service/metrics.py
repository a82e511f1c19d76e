"""Prometheus metrics as a node_exporter textfile (no HTTP server on a patient kiosk).

node_exporter's textfile collector reads every `*.prom` file in its directory (Debian:
/var/lib/prometheus/node-exporter); we rewrite ours atomically every `metrics.interval_s`
with prometheus_client's `write_to_textfile` (temporary file + rename in the same dir).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kiosk import __version__
from kiosk.settings import MetricsSettings
from kiosk.states import State, StateChange

log = logging.getLogger(__name__)

PREFIX = "voice_kiosk"
# Known kinds get a 0 sample from the start, so rate() and alerts work before the first error.
ERROR_KINDS = ("auth", "network", "unavailable", "protocol", "device", "config", "internal")
LATENCY_WINDOW = 200  # latest samples kept for the p95


def p95(samples: deque[float] | list[float]) -> float:
    """Nearest-rank 95th percentile; NaN when there are no samples yet."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class _Latency:
    """Time from entering one state to entering another, e.g. thinking -> speaking."""

    def __init__(self) -> None:
        self.started_at: float | None = None
        self.samples: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def begin(self, at: float) -> None:
        self.started_at = at

    def end(self, at: float) -> None:
        if self.started_at is not None:
            self.samples.append(max(0.0, at - self.started_at))
            self.started_at = None

    def cancel(self) -> None:
        self.started_at = None

    @property
    def last(self) -> float:
        return self.samples[-1] if self.samples else math.nan


class Metrics:
    """Counts what the kiosk does and writes it as a textfile.

    >>> metrics = Metrics(settings.metrics, settings.kiosk.id)
    >>> controller.add_observer(metrics.on_state_change)
    >>> metrics.start()          # background writes every interval_s
    >>> metrics.count_press()    # from the button handler
    >>> metrics.close()          # last write on shut-down

    Disabled (every method a cheap no-op apart from counting) when `textfile` is None.
    """

    def __init__(self, settings: MetricsSettings, kiosk_id: str) -> None:
        self.settings = settings
        self.kiosk_id = kiosk_id
        self._lock = threading.Lock()
        self._started = time.time()
        self._state: str = State.IDLE
        self._session_id: str | None = None
        self._sessions = 0
        self._presses = 0
        self._reconnects = 0
        self._overruns = 0
        self._underruns = 0
        self._errors: Counter[str] = Counter({kind: 0 for kind in ERROR_KINDS})
        self._press_to_listening = _Latency()
        self._answer = _Latency()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_failed = False
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]  # duck-typed Collector

    @property
    def enabled(self) -> bool:
        return self.settings.textfile is not None

    # --- inputs -----------------------------------------------------------------------

    def on_state_change(self, change: StateChange) -> None:
        """Controller observer: sessions, errors and both latencies come from transitions."""
        with self._lock:
            self._state = change.new
            # A reconnect inside a session re-enters connecting with the same session id.
            new_session = change.session_id is None or change.session_id != self._session_id
            if change.new == State.CONNECTING and new_session:
                self._session_id = change.session_id
                self._sessions += 1
                self._press_to_listening.begin(change.at)
            elif change.new == State.LISTENING:
                self._press_to_listening.end(change.at)
            if change.new == State.THINKING:
                self._answer.begin(change.at)
            elif change.new == State.SPEAKING:
                self._answer.end(change.at)
            elif change.new in (State.ERROR, State.IDLE):
                self._press_to_listening.cancel()
                self._answer.cancel()
            if change.new == State.ERROR:
                self._errors[change.error_kind or "internal"] += 1

    def count_press(self) -> None:
        with self._lock:
            self._presses += 1

    def count_reconnect(self) -> None:
        with self._lock:
            self._reconnects += 1

    def set_audio_counters(self, overruns: int, underruns: int) -> None:
        """Totals since start, as counted by the audio streams (not increments)."""
        with self._lock:
            self._overruns, self._underruns = overruns, underruns

    # --- prometheus_client Collector protocol -----------------------------------------

    def collect(self) -> Iterator[Metric]:
        labels = ["kiosk"]
        kid = [self.kiosk_id]
        with self._lock:
            info = GaugeMetricFamily(f"{PREFIX}_info", "Kiosk version (value is always 1).",
                                     labels=["kiosk", "version"])
            info.add_metric([self.kiosk_id, __version__], 1)
            yield info
            state = GaugeMetricFamily(f"{PREFIX}_state", "1 for the kiosk's current state.",
                                      labels=["kiosk", "state"])
            for s in State:
                state.add_metric([self.kiosk_id, s.value], 1.0 if s == self._state else 0.0)
            yield state
            for name, doc, value in (
                ("sessions", "Sessions started (entries to connecting).", self._sessions),
                ("button_presses", "Button presses.", self._presses),
                ("reconnects", "Realtime reconnect attempts.", self._reconnects),
                ("audio_overruns", "Microphone frames lost (capture overruns).",
                 self._overruns),
                ("audio_underruns", "Speaker starved (playback underruns).", self._underruns),
            ):
                c = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
                c.add_metric(kid, value)
                yield c
            errors = CounterMetricFamily(f"{PREFIX}_errors", "Errors by kind.",
                                         labels=["kiosk", "kind"])
            for kind, count in sorted(self._errors.items()):
                errors.add_metric([self.kiosk_id, kind], count)
            yield errors
            for name, doc, latency in (
                ("press_to_listening", "Button press to listening", self._press_to_listening),
                ("answer_latency", "End of speech (thinking) to first answer audio (speaking)",
                 self._answer),
            ):
                for stat, value in (("last", latency.last), ("p95", p95(latency.samples))):
                    g = GaugeMetricFamily(f"{PREFIX}_{name}_{stat}_seconds",
                                          f"{doc}, {stat}, seconds (NaN before the first).",
                                          labels=labels)
                    g.add_metric(kid, value)
                    yield g
        start = GaugeMetricFamily(f"{PREFIX}_start_time_seconds",
                                  "Unix time the daemon started.", labels=labels)
        start.add_metric(kid, self._started)
        yield start
        uptime = GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since start.",
                                   labels=labels)
        uptime.add_metric(kid, time.time() - self._started)
        yield uptime

    # --- output -----------------------------------------------------------------------

    def write(self) -> bool:
        """Write the textfile now; False (logged once) if it cannot be written."""
        if not self.enabled:
            return False
        assert self.settings.textfile is not None
        try:
            write_to_textfile(self.settings.textfile, self.registry)
        except OSError as exc:
            if not self._write_failed:
                log.warning("metrics: cannot write %s: %s", self.settings.textfile, exc)
            self._write_failed = True
            return False
        if self._write_failed:
            log.info("metrics: writing %s again", self.settings.textfile)
        self._write_failed = False
        return True

    def start(self) -> None:
        """Write now and then every interval_s from a daemon thread (no-op if disabled)."""
        if not self.enabled or (self._thread and self._thread.is_alive()):
            return
        self._stopping.clear()
        self.write()
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.settings.interval_s):
            self.write()

    def close(self) -> None:
        """Stop the writer thread and write the final values."""
        self._stopping.set()
        if self._thread:
            self._thread.join(5.0)
            self._thread = None
        self.write()

"""Prometheus metrics as a node_exporter textfile (no HTTP server on a patient kiosk).

node_exporter's textfile collector reads every `*.prom` file in its directory (Debian:
/var/lib/prometheus/node-exporter). The file is a few lines of Prometheus' text exposition
format, so it is written here directly rather than with a client library: the counters are
copied under a lock, formatted outside it, and the file is replaced atomically (temporary
file in the same directory, then rename) every `metrics.interval_s` and at shut-down.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiosk import __version__
from kiosk.files import write_atomically
from kiosk.settings import MetricsSettings
from kiosk.states import State, StateChange

if TYPE_CHECKING:
    from kiosk.audio.echo import EchoStats
    from kiosk.nurse import NurseCallChange

log = logging.getLogger(__name__)

PREFIX = "voice_kiosk"
# Known kinds get a 0 sample from the start, so rate() and alerts work before the first error.
ERROR_KINDS = ("auth", "network", "unavailable", "protocol", "device", "config", "gpio",
               "internal")
ECHO_MODES = ("aec", "gate", "none")
# The echo canceller's modes (kiosk/audio/aec.py), each a 0/1 sample while aec runs.
AEC_STATES = ("bypass", "converging", "active", "no_echo", "failed")
LATENCY_WINDOW = 200  # latest samples kept for the p95
NURSE_SOURCES = ("switch", "assistant")  # what can request a nurse


def p95(samples: Iterable[float]) -> float:
    """Nearest-rank 95th percentile; NaN when there are no samples yet."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
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


@dataclass(frozen=True)
class Family:
    """One metric family of the text format: its samples as (labels, value)."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: list[tuple[dict[str, str], float]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """Families in Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for labels, value in f.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{f.name}{{{text}}} {_number(value)}")
    return "\n".join(lines) + "\n"


class Metrics:
    """Counts what the kiosk does and writes it as a textfile.

    >>> metrics = Metrics(settings.metrics, settings.kiosk.id)
    >>> controller.add_observer(metrics)   # on_state_change
    >>> metrics.start()          # background writes every interval_s
    >>> metrics.count_press()    # from the button handler
    >>> metrics.close()          # last write on shut-down

    Disabled (every method a cheap no-op apart from counting) when `textfile` is None.
    """

    def __init__(self, settings: MetricsSettings, kiosk_id: str) -> None:
        self.settings = settings
        self.kiosk_id = kiosk_id
        self._lock = threading.Lock()  # guards the counters only; never held across I/O
        self._started = time.time()
        self._state: str = State.IDLE
        self._visit_id: str | None = None
        self._visits = 0
        self._presses = 0
        self._reconnects = 0
        self._answers = 0
        self._last_answer: float = math.nan  # unix time of the latest answer that played
        # Counters kept by other parts (the audio streams), read when the file is written:
        # name -> (help, read, total of earlier sources of the same name, last value read).
        self._sources: dict[str, tuple[str, Callable[[], int], int, int]] = {}
        self._errors: Counter[str] = Counter({kind: 0 for kind in ERROR_KINDS})
        self._health: dict[str, bool] = {}
        self._echo: Callable[[], EchoStats] | None = None
        self._fallbacks_base = 0  # fallbacks of earlier audio engines (before a reload)
        self._fallbacks_last = 0
        # The nurse request (None: not configured): latched, the relay read back, requests.
        self._nurse: tuple[bool, bool] | None = None
        self._nurse_calls: Counter[str] = Counter({source: 0 for source in NURSE_SOURCES})
        self._providers: list[Callable[[], list[Family]]] = []
        self._press_to_listening = _Latency()
        self._answer = _Latency()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_failed = False

    @property
    def enabled(self) -> bool:
        return self.settings.textfile is not None

    # --- inputs -----------------------------------------------------------------------

    def on_state_change(self, change: StateChange) -> None:
        """Controller observer: visits, errors and both latencies come from transitions."""
        with self._lock:
            self._state = change.new
            # A reconnect inside a visit re-enters connecting with the same visit id.
            new_visit = change.visit_id is None or change.visit_id != self._visit_id
            if change.new == State.CONNECTING and new_visit:
                self._visit_id = change.visit_id
                self._visits += 1
                self._press_to_listening.begin(change.at)
            elif change.new == State.LISTENING:
                self._press_to_listening.end(change.at)
            if change.new == State.THINKING:
                self._answer.begin(change.at)
            elif change.new == State.SPEAKING:
                self._answer.end(change.at)
                self._answers += 1
                self._last_answer = time.time()
            elif change.new in (State.ERROR, State.IDLE):
                self._press_to_listening.cancel()
                self._answer.cancel()
            if change.new == State.ERROR:
                self._errors[change.error_kind or "internal"] += 1

    def on_nurse_call(self, change: NurseCallChange) -> None:
        """Nurse request observer: its state (the relay as read back) and the requests."""
        with self._lock:
            self._nurse = (change.active, change.contact_closed)
            if change.new_request:
                self._nurse_calls[change.source] += 1

    def count_press(self) -> None:
        with self._lock:
            self._presses += 1

    def count_reconnect(self) -> None:
        with self._lock:
            self._reconnects += 1

    def add_counter(self, name: str, doc: str, read: Callable[[], int]) -> None:
        """Export a counter another part keeps (`read()` returns its total), read at every
        write. A later source of the same name (a reload builds new audio streams) continues
        the total instead of restarting it."""
        with self._lock:
            old = self._sources.get(name)
            base = old[2] + old[3] if old is not None else 0
            self._sources[name] = (doc, read, base, 0)

    def set_echo_source(self, read: Callable[[], EchoStats]) -> None:
        """Export the echo mode and the canceller's figures (`kiosk.audio.echo.EchoControl.
        stats`), read at every write. A later source (a reload) continues the fallbacks."""
        with self._lock:
            if self._echo is not None:
                self._fallbacks_base += self._fallbacks_last
                self._fallbacks_last = 0
            self._echo = read

    def add_families(self, provider: Callable[[], list[Family]]) -> None:
        """Export the families another part builds (the remote test call's), asked for at
        every write; it must not wait, and may give none (absent until it has something)."""
        with self._lock:
            self._providers.append(provider)

    def set_health(self, part: str, ok: bool) -> None:
        """Whether a part (microphone, speaker, gpio) works now; exported as a gauge."""
        with self._lock:
            self._health[part] = ok

    # --- output -----------------------------------------------------------------------

    def families(self) -> list[Family]:
        """A consistent snapshot of every metric (the lock is held only to copy)."""
        k = {"kiosk": self.kiosk_id}
        with self._lock:
            sources = dict(self._sources)
        read: dict[str, int] = {}
        for name, (_doc, source, _base, last) in sources.items():
            try:
                read[name] = int(source())
            except Exception:  # a counter of a part being torn down: keep its last value
                read[name] = last
        echo_read = self._echo
        echo: EchoStats | None = None
        if echo_read is not None:
            try:
                echo = echo_read()
            except Exception:  # an audio engine being torn down: leave the echo out once
                echo = None
        with self._lock:
            if echo is not None and echo_read is self._echo:
                self._fallbacks_last = echo.fallbacks
            fallbacks = self._fallbacks_base + self._fallbacks_last
            for name, value in read.items():
                if name in self._sources and self._sources[name][1] is sources[name][1]:
                    doc, source, base, _ = self._sources[name]
                    self._sources[name] = (doc, source, base, value)
            state = self._state
            counters = (self._visits, self._presses, self._reconnects, self._answers)
            last_answer = self._last_answer
            errors = sorted(self._errors.items())
            nurse, nurse_calls = self._nurse, sorted(self._nurse_calls.items())
            health = sorted(self._health.items())
            latencies = [(lat.last, p95(lat.samples))
                         for lat in (self._press_to_listening, self._answer)]
        out = [
            Family(f"{PREFIX}_info", "gauge", "Kiosk version (value is always 1).",
                   [({**k, "version": __version__}, 1)]),
            Family(f"{PREFIX}_state", "gauge", "1 for the kiosk's current state.",
                   [({**k, "state": s.value}, 1 if s == state else 0) for s in State]),
        ]
        for (name, doc), value in zip((
                ("visits", "Visits started (a press to the end of that conversation)."),
                ("button_presses", "Button presses."),
                ("reconnects", "Realtime links reopened after one was lost mid-visit."),
                ("answers", "Answers that started playing (the proof a visit worked)."),
        ), counters, strict=True):
            out.append(Family(f"{PREFIX}_{name}_total", "counter", doc, [(k, value)]))
        for name, (doc, _source, base, _last) in sorted(sources.items()):
            out.append(Family(f"{PREFIX}_{name}_total", "counter", doc,
                              [(k, base + read[name])]))
        out.append(Family(f"{PREFIX}_errors_total", "counter", "Errors by kind.",
                          [({**k, "kind": kind}, count) for kind, count in errors]))
        if nurse is not None:
            active, contact_closed = nurse
            out.append(Family(f"{PREFIX}_nurse_call_active", "gauge", "1 while a nurse request "
                              "is latched (until reset), else 0.", [(k, int(active))]))
            out.append(Family(f"{PREFIX}_nurse_call_relay_closed", "gauge", "1 while the nurse "
                              "call relay's contact is closed, as read back from its pin.",
                              [(k, int(contact_closed))]))
            out.append(Family(f"{PREFIX}_nurse_calls_total", "counter", "Nurse requests by "
                              "source (switch, assistant).",
                              [({**k, "source": src}, n) for src, n in nurse_calls]))
        if health:
            out.append(Family(f"{PREFIX}_part_ok", "gauge",
                              "1 while a part (microphone, speaker, gpio) works, else 0.",
                              [({**k, "part": part}, 1 if ok else 0) for part, ok in health]))
        if echo_read is not None:
            out.extend(_echo_families(k, echo, fallbacks))
        for (name, doc), (latest, pct) in zip((
                ("press_to_listening", "Button press to listening"),
                ("answer_latency", "End of speech (thinking) to first answer audio (speaking)"),
        ), latencies, strict=True):
            for stat, seconds in (("last", latest), ("p95", pct)):
                out.append(Family(f"{PREFIX}_{name}_{stat}_seconds", "gauge",
                                  f"{doc}, {stat}, seconds (NaN before the first).",
                                  [(k, seconds)]))
        out.append(Family(f"{PREFIX}_last_answer_timestamp_seconds", "gauge",
                          "Unix time the latest answer started playing (NaN before the first).",
                          [(k, last_answer)]))
        with self._lock:
            providers = list(self._providers)
        for provider in providers:
            try:
                out.extend(provider())
            except Exception:  # a broken part must not cost the kiosk all its metrics
                log.exception("metrics: %s failed", getattr(provider, "__qualname__", provider))
        now = time.time()
        out.append(Family(f"{PREFIX}_start_time_seconds", "gauge",
                          "Unix time the daemon started.", [(k, self._started)]))
        out.append(Family(f"{PREFIX}_uptime_seconds", "gauge", "Seconds since start.",
                          [(k, now - self._started)]))
        return out

    def write(self) -> bool:
        """Write the textfile now; False (logged once) if it cannot be written."""
        path = self.settings.textfile
        if path is None:
            return False
        text = render(self.families())
        folder = os.path.dirname(os.path.abspath(path))
        try:
            write_atomically(path, text, mode=0o644)  # node_exporter runs as another user
        except OSError as exc:
            if not self._write_failed:
                log.warning("metrics: cannot write %s (%s). The service user needs write "
                            "access to %s (run `sudo systemd/install.sh` again, which prepares "
                            "it); a directory created after the service started needs "
                            "`systemctl restart voice-kiosk`", path, exc.strerror or exc,
                            folder)
            self._write_failed = True
            return False
        if self._write_failed:
            log.info("metrics: writing %s again", path)
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


def _echo_families(k: dict[str, str], echo: EchoStats | None,
                   fallbacks: int) -> list[Family]:
    """`audio.echo_mode` in effect and the echo canceller's figures (NaN unless it runs)."""
    effective = echo.effective if echo is not None else ""
    aec = echo.aec if echo is not None else None
    nan = math.nan
    erle = nan if aec is None or aec.erle_db is None else aec.erle_db
    delay = nan if aec is None or aec.delay_ms is None else aec.delay_ms / 1000.0
    return [
        Family(f"{PREFIX}_echo_mode", "gauge",
               "1 for the echo mode in effect (aec, gate, none; gate when aec is configured "
               "but the WebRTC library is missing).",
               [({**k, "mode": m}, 1 if m == effective else 0) for m in ECHO_MODES]),
        Family(f"{PREFIX}_aec_state", "gauge",
               "1 for the echo canceller's mode (all 0 unless echo_mode aec runs).",
               [({**k, "state": s}, 1 if aec is not None and aec.mode == s else 0)
                for s in AEC_STATES]),
        Family(f"{PREFIX}_aec_erle_db", "gauge",
               "Echo reduction by the canceller over the latest seconds of playback, dB "
               "(NaN before the first answer or unless aec runs).", [(k, erle)]),
        Family(f"{PREFIX}_aec_delay_seconds", "gauge",
               "Estimated delay of the speaker's echo at the microphone, seconds (NaN "
               "before it is estimated or unless aec runs).", [(k, delay)]),
        Family(f"{PREFIX}_aec_fallbacks_total", "counter",
               "Visits in which the echo canceller did not converge and the echo gate took "
               "over.", [(k, fallbacks)]),
    ]

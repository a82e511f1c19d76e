"""`voice-kiosk run`: the process systemd starts.

The main thread only handles requests that signals put on a queue (stop, reload, press,
test call); the controller thread owns the kiosk's state. SIGTERM/SIGINT stop within 3 s,
SIGHUP reloads the configuration (a broken file is rejected and the kiosk keeps running on
the old one), SIGUSR1 is a short button press (`systemctl kill -s USR1 voice-kiosk`), SIGUSR2
a remote test call (`voice-kiosk test-call`, kiosk/test_call).
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import time
from typing import Any

from kiosk import config
from kiosk import events as ev
from kiosk.settings import Settings

log = logging.getLogger("kiosk")

EXIT_CONFIG = 78  # EX_CONFIG: the unit's RestartPreventExitStatus stops a restart loop


def run_daemon(config_path: str) -> int:
    from kiosk.service.logs import setup_logging, teardown_logging
    from kiosk.service.notify import SystemdNotifier

    try:
        settings = config.load(config_path)
    except config.ConfigError as exc:
        logging.basicConfig(format="voice-kiosk: %(message)s")
        for problem in exc.problems:
            log.error("configuration: %s", problem)
        log.error("not starting: fix %s and run `voice-kiosk check-config`", config_path)
        SystemdNotifier().status(f"error: configuration invalid ({len(exc.problems)} problems)")
        return EXIT_CONFIG
    log_context = setup_logging(settings.logging, settings.kiosk)
    notifier = SystemdNotifier(settings.kiosk.id)
    try:
        return Daemon(config_path, settings, notifier, log_context).run()
    finally:
        teardown_logging()  # the last lines ("stopped in ...") are written before exit


class Daemon:
    def __init__(self, config_path: str, settings: Settings, notifier: Any, log_context: Any):
        self.config_path = config_path
        self.settings = settings
        self.notifier = notifier
        self.log_context = log_context
        self.requests: queue.SimpleQueue[str] = queue.SimpleQueue()  # reentrant: signal-safe
        self.kiosk: Any = None
        self.simulator: Any = None
        self.metrics: Any = None
        self.test_calls: Any = None

    def run(self) -> int:
        from kiosk.service.metrics import Metrics
        from kiosk.service.watchdog import Watchdog
        from kiosk.test_call.report import TestCallReports

        for sig, request in ((signal.SIGTERM, "stop"), (signal.SIGINT, "stop"),
                             (signal.SIGHUP, "reload"), (signal.SIGUSR1, "press"),
                             (signal.SIGUSR2, "test_call")):
            signal.signal(sig, functools.partial(self._on_signal, request))
        # The kernel may hand a signal to any of the kiosk's threads; only the main thread
        # runs Python's handlers, and a main thread blocked in a queue would not notice. The
        # C-level handler also writes to this pipe, which wakes the main thread wherever the
        # signal landed: no periodic wake-ups needed.
        self._wakeup, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        s = self.settings
        log.info("voice-kiosk starting: kiosk %s%s, config %s", s.kiosk.id,
                 f" at {s.kiosk.location}" if s.kiosk.location else "", self.config_path)
        self.test_calls = TestCallReports(s.test_call, s.kiosk.id)
        self.metrics = Metrics(s.metrics, s.kiosk.id)
        self.metrics.add_families(self.test_calls.families)
        self.metrics.start()
        self._build(s)
        self.notifier.ready(self._selfcheck())
        watchdog = Watchdog(self.notifier, [self.controller_loop_alive,
                                            self.audio_streams_alive,
                                            self.conversation_loop_alive])
        watchdog.start()
        try:
            return self._serve()
        finally:
            watchdog.stop()
            self.metrics.close()

    def _on_signal(self, request: str, signum: int, frame: object) -> None:
        self.requests.put(request)  # SimpleQueue.put is reentrant: safe in a handler

    def _serve(self) -> int:
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                os.read(self._wakeup, 64)  # until a signal arrives; its handler has run then
                continue
            if request == "press":
                log.info("SIGUSR1: short button press")
                self.kiosk.press(ev.ButtonPressed(source="sigusr1"))
            elif request == "test_call":
                self._test_call()
            elif request == "reload":
                self._reload()
            elif request == "stop":
                return self._stop()

    def _test_call(self) -> None:
        running = self.test_calls.running
        if running is not None:
            log.info("SIGUSR2: test call %s is running; its result answers this request too",
                     running)
            return
        log.info("SIGUSR2: remote test call requested")
        self.kiosk.test_call(self.test_calls)

    def _build(self, settings: Settings) -> None:
        from kiosk.assembly import Kiosk

        if settings.uses_simulator and self.simulator is None:
            # Imported only here: the simulator is a demo and test tool, never loaded by a
            # kiosk that talks to a real gateway.
            from kiosk.sim import Simulator

            log.warning("gateway.url is `simulator`: using the built-in simulator on loopback "
                        "(it answers with a tone; no real assistant). Set gateway.url to the "
                        "hospital's voice gateway for a real deployment.")
            self.simulator = Simulator()
            self.simulator.start()
        elif not settings.uses_simulator and self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        self.kiosk = Kiosk(settings, [self.log_context, self.notifier], self.simulator,
                           self.metrics)
        self.kiosk.start()

    # The watchdog's checks, named so that its log says which one failed.
    def controller_loop_alive(self) -> bool:
        return self.kiosk is not None and self.kiosk.controller_loop_alive()

    def audio_streams_alive(self) -> bool:
        return self.kiosk is not None and self.kiosk.audio_streams_alive()

    def conversation_loop_alive(self) -> bool:
        return self.kiosk is not None and self.kiosk.conversation_loop_alive()

    def _selfcheck(self) -> str:
        from kiosk.service.selfcheck import run_selfcheck

        kiosk = self.kiosk
        result = run_selfcheck(self.settings, kiosk.audio_health, gpio_ok=kiosk.gpio_health)
        for line in result.lines:
            (log.info if result.ok else log.warning)("self-check: %s", line)
        change = kiosk.controller.last_change
        if change is not None and change.new == "error":
            # What is wrong and what to set comes first; the summary only names the checks.
            kind = f"{change.error_kind}: " if change.error_kind else ""
            return self.notifier.status_text("error", f"{kind}{change.detail}; "
                                                      f"{result.summary}")
        return self.notifier.status_text(kiosk.controller.state.value, result.summary)

    def _reload(self) -> None:
        self.notifier.reloading()
        log.info("SIGHUP: reloading %s", self.config_path)
        try:
            new = config.load(self.config_path)
        except config.ConfigError as exc:
            for problem in exc.problems:
                log.error("reload rejected: %s", problem)
            log.error("reload rejected (%d problems): still running on the previous "
                      "configuration", len(exc.problems))
            self.notifier.ready(self.notifier.status_text(
                self.kiosk.controller.state.value, "reload rejected: configuration invalid"))
            return
        from kiosk.service.logs import setup_logging

        self.kiosk.close()
        if (new.metrics, new.kiosk.id) != (self.settings.metrics, self.settings.kiosk.id):
            from kiosk.service.metrics import Metrics

            self.metrics.close()
            self.metrics = Metrics(new.metrics, new.kiosk.id)
            self.metrics.add_families(self.test_calls.families)
            self.metrics.start()
        self.settings = new
        self.test_calls.configure(new.test_call, new.kiosk.id)
        self.log_context = setup_logging(new.logging, new.kiosk)
        self.notifier.kiosk_id = new.kiosk.id
        self._build(new)
        log.info("configuration reloaded")
        self.notifier.ready(self.notifier.status_text(self.kiosk.controller.state.value,
                                                      "configuration reloaded"))

    def _stop(self) -> int:
        started = time.monotonic()
        self.notifier.stopping(self.notifier.status_text("stopping", "shutting down"))
        log.info("stopping")
        self.kiosk.close()
        self.test_calls.close()  # the result of a test call the stop abandoned
        if self.simulator is not None:
            self.simulator.stop()
        log.info("stopped in %.2f s", time.monotonic() - started)
        return 0

"""Build one running kiosk from its settings: audio, GPIO, session, controller, observers.

The daemon builds a `Kiosk` at start-up and builds a fresh one on every successful reload;
everything one `Kiosk` starts, its `close()` stops.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kiosk import config
from kiosk import events as ev
from kiosk.controller import Controller, Observer
from kiosk.settings import Settings

log = logging.getLogger("kiosk")


class Kiosk:
    """One configured kiosk.

    >>> k = Kiosk(settings, extra_observers=[notifier, log_context])
    >>> k.start()            # never raises for missing hardware: shows `error` instead
    >>> k.post(ev.ButtonPressed(source="sigusr1"))
    >>> k.close()
    """

    def __init__(self, settings: Settings, extra_observers: list[Observer] | None = None,
                 simulator: Any | None = None, metrics: Any | None = None):
        from kiosk.audio.engine import AudioEngine
        from kiosk.conversation import Conversation
        from kiosk.service.metrics import Metrics

        self.settings = settings
        self._closers: list[Callable[[], None]] = []
        self.simulator = simulator
        session_settings = self._session_settings(settings, simulator)
        # The daemon passes one Metrics for its whole life, so a reload does not reset counters.
        self._own_metrics = metrics is None
        self.metrics = metrics or Metrics(settings.metrics, settings.kiosk.id)
        self.audio = AudioEngine(settings.audio, listener=self._on_audio)
        self.conversation = Conversation(session_settings, self.audio, self.post,
                                         counters=self.metrics)
        self._closers.append(self.conversation.close)
        self.controller = Controller(settings.visit, self.conversation)
        for observer in [*(extra_observers or []), self.metrics, self.audio.cues]:
            self.controller.add_observer(observer)
        capture, playback, engine = self.audio.capture, self.audio.playback, self.audio
        self.metrics.add_counter("audio_overruns", "Microphone audio lost (capture overruns).",
                                 lambda: capture.overruns)
        self.metrics.add_counter("audio_underruns", "Speaker starved (playback underruns).",
                                 lambda: playback.underruns)
        self.metrics.add_counter("audio_callback_errors", "Audio callbacks that raised (a "
                                 "block lost each; see the journal).",
                                 lambda: engine.callback_errors)
        self.metrics.set_echo_source(engine.echo.stats)
        self.light: Any = None
        self.button: Any = None
        self.gpio_problem: str | None = None

    # Late-bound so the audio engine and conversation can be built before the controller.
    def post(self, event: ev.Event) -> bool:
        return self.controller.post(event)

    def press(self, event: ev.Event) -> None:
        """A press from the button, the assistive switch or SIGUSR1: counted, then posted."""
        self.metrics.count_press()
        self.post(event)

    def _on_audio(self, what: str, message: str) -> None:
        if what == "lost":
            for part in ("microphone", "speaker"):
                self.metrics.set_health(part, part not in self.audio.missing)
            self.post(ev.Fault("device", message, persistent=True))
        elif what == "ready":
            for part in ("microphone", "speaker"):
                self.metrics.set_health(part, True)
            self.post(ev.Recovered("device", message))

    def _session_settings(self, settings: Settings, simulator: Any | None) -> Settings:
        """With `gateway.url: simulator`, point the conversation at the built-in simulator,
        with a throw-away API key file only this process can read."""
        if simulator is None:
            return settings
        fd, key_path = tempfile.mkstemp(prefix="voice-kiosk-sim-key-")
        with os.fdopen(fd, "w") as f:
            f.write(simulator.api_key)
        self._closers.append(lambda: os.unlink(key_path))
        gateway = replace(settings.gateway, url=simulator.gateway_url, api_key_file=key_path,
                          token_file=None, email=None, password_file=None)
        return replace(settings, gateway=gateway)

    def start(self) -> None:
        if not self.settings.gateway.url:
            # Valid but unusable: show it (and replay the error cue on every press) until a
            # reload brings a gateway; never fall back to the simulator silently.
            message = config.no_gateway_message(self.settings.source)
            log.error("not configured: %s", message, extra={"error_kind": "config"})
            self.post(ev.Fault("config", message, persistent=True))
        self._start_gpio()
        self.controller.start()
        self._closers.append(self.controller.stop)
        if self.audio.start():
            for part in ("microphone", "speaker"):
                self.metrics.set_health(part, True)
        else:
            log.error("audio devices not ready; retrying every %g s",
                      self.settings.audio.device_retry_s)
        self._closers.append(self.audio.stop)
        if self._own_metrics:
            self.metrics.start()
            self._closers.append(self.metrics.close)

    def _start_gpio(self) -> None:
        from kiosk.hw.button import KioskButton
        from kiosk.hw.leds import StatusLight
        from kiosk.hw.pins import open_pins

        gpio = self.settings.gpio
        try:
            pins = open_pins(gpio)
            self._closers.append(pins.close)  # releases the GPIO chip (after the devices)
            self.light = StatusLight(gpio, pins.factory)
            self._closers.append(self.light.close)
            self.light.show(self.controller.state)  # at start and after a reload, not later
            self.controller.add_observer(self.light)
            self.button = KioskButton(gpio, pins.factory, self.press)
            self._closers.append(self.button.close)
        except Exception as exc:  # noqa: BLE001 - GpioUnavailable, or a pin already in use
            # The kiosk stays usable: SIGUSR1 presses and sound still work. The error is shown
            # (and heard) once, then `idle` says what is missing; a reload retries.
            self.gpio_problem = str(exc)
            self.metrics.set_health("gpio", False)
            log.error("GPIO: %s", exc, extra={"error_kind": "gpio"})
            self.post(ev.Fault("gpio", f"GPIO unavailable (gpio.pin_factory "
                                       f"{gpio.pin_factory}): no button or light, SIGUSR1 "
                                       "works; see the journal", persistent=True,
                               blocks_visits=False))
            return
        self.metrics.set_health("gpio", True)

    def gpio_health(self) -> tuple[bool, str]:
        """For the start-up self-check: did the button and light pins open."""
        if self.gpio_problem is None:
            return True, f"button and light pins open ({self.settings.gpio.pin_factory})"
        return False, self.gpio_problem

    def audio_health(self) -> tuple[bool, str]:
        """For the start-up self-check: are both devices open, and if not, why."""
        if self.audio.ready:
            return True, "microphone and speaker open"
        return False, self.audio.last_error or "audio devices not open"

    def controller_loop_alive(self) -> bool:
        """The state machine's thread is turning (its heartbeat is recent)."""
        return self.controller.alive()

    def audio_streams_alive(self) -> bool:
        """The audio callbacks are running. While a device is missing the kiosk is alive in
        its error state (the engine is retrying), so that counts as alive too -- as long as
        the engine's supervisor, which does the retrying, runs."""
        return self.audio.alive() or (not self.audio.ready and self.audio.supervisor_alive())

    def conversation_loop_alive(self) -> bool:
        """The thread that owns the conversation is running."""
        return self.conversation.alive()

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:
                log.exception("while shutting down %s", getattr(closer, "__qualname__", closer))

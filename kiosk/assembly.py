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
from datetime import datetime
from typing import Any

from kiosk import config
from kiosk import events as ev
from kiosk.controller import IN_VISIT, Controller, Observer
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
                 simulator: Any | None = None, metrics: Any | None = None,
                 local_time: Callable[[], datetime] = datetime.now):
        from kiosk.audio.engine import AudioEngine
        from kiosk.audio.prompts import SpokenPrompts
        from kiosk.conversation import Conversation
        from kiosk.service.allocator import release_free_memory
        from kiosk.service.metrics import Metrics

        self.settings = settings
        self._local_time = local_time  # the night profile's clock
        self._closers: list[Callable[[], None]] = []
        self.simulator = simulator
        session_settings = self._session_settings(settings, simulator)
        # The daemon passes one Metrics for its whole life, so a reload does not reset counters.
        self._own_metrics = metrics is None
        self.metrics = metrics or Metrics(settings.metrics, settings.kiosk.id)
        self.audio = AudioEngine(settings.audio, listener=self._on_audio,
                                 at_rest=release_free_memory)
        tool = self.request_nurse if settings.realtime.nurse_call_tool else None
        self.prompts = SpokenPrompts(settings, self.audio.playback)
        self.audio.cues.set_error_speaker(self.prompts.speak_for)
        self.conversation = Conversation(session_settings, self.audio, self.post,
                                         counters=self.metrics, request_nurse=tool)
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
        self.switch: Any = None  # the assistive switch (gpio.switch_pin)
        self.nurse: Any = None  # kiosk.nurse.NurseCall (gpio.nurse_call.pin)
        self.night: Any = None  # kiosk.night.NightProfile (night.start / end)
        self.gpio_problem: str | None = None

    # Late-bound so the audio engine and conversation can be built before the controller.
    def post(self, event: ev.Event) -> bool:
        return self.controller.post(event)

    def press(self, event: ev.Event) -> None:
        """A press from the button, the assistive switch or SIGUSR1: counted, then posted.
        A long press outside a visit also resets a latched nurse request."""
        self.metrics.count_press()
        if (isinstance(event, ev.ButtonPressed) and event.long and self.nurse is not None
                and self.controller.state not in IN_VISIT):
            self.nurse.reset("long press")
        self.post(event)

    def request_nurse(self, source: str) -> bool:
        """The assistant's request_nurse tool; True when a working relay passes it on."""
        nurse = self.nurse
        return bool(nurse.request(source)) if nurse is not None else False

    def test_call(self, reporter: Any) -> None:
        """A remote test call (SIGUSR2): the controller runs it only while idle. `reporter`:
        kiosk.test_call.report.TestCallReports, which outlives a reload."""
        from kiosk.test_call.call import TestCall

        TestCall(self.settings, reporter, self.post).request()

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
        self.prompts.start()  # espeak-ng on its own thread: ready within a second or so
        self._closers.append(self.prompts.close)
        self._start_gpio()
        self._start_night()
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
        factory = None
        try:
            pins = open_pins(gpio)
            self._closers.append(pins.close)  # releases the GPIO chip (after the devices)
            self.light = StatusLight(gpio, pins.factory)
            self._closers.append(self.light.close)
            self.light.show(self.controller.state)  # at start and after a reload, not later
            self.controller.add_observer(self.light)
            self.button = KioskButton(gpio, pins.factory, self.press)
            self._closers.append(self.button.close)
            factory = pins.factory
        except Exception as exc:  # noqa: BLE001 - GpioUnavailable, or a pin already in use
            # The kiosk stays usable: SIGUSR1 presses and sound still work. The error is shown
            # (and heard) once, then `idle` says what is missing; a reload retries.
            self._gpio_failed(f"GPIO unavailable (gpio.pin_factory {gpio.pin_factory}): no "
                              "button or light, SIGUSR1 works; see the journal", exc)
        self.metrics.set_health("gpio", factory is not None)
        self._start_bedside(factory)

    def _gpio_failed(self, message: str, exc: BaseException | str) -> None:
        self.gpio_problem = self.gpio_problem or str(exc)
        self.metrics.set_health("gpio", False)
        log.error("GPIO: %s", exc, extra={"error_kind": "gpio"})
        self.post(ev.Fault("gpio", message, persistent=True, blocks_visits=False))

    def _start_bedside(self, factory: Any) -> None:
        """The nurse request relay, the assistive switch and the staff's reset input. The
        relay's owner runs even without GPIO (the assistant is then told the call failed)."""
        from kiosk.hw.relay import NurseCallRelay
        from kiosk.hw.switch import AssistiveSwitch, ResetInput
        from kiosk.nurse import NurseCall

        gpio = self.settings.gpio
        if gpio.nurse_call.pin is not None:
            def open_relay(closed: bool) -> NurseCallRelay:
                return NurseCallRelay(gpio.nurse_call, factory, closed)

            state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None
            self.nurse = NurseCall(gpio.nurse_call, open_relay if factory else None,
                                   state_dir, on_problem=self._nurse_problem)
            for observer in (self.light, self.audio.cues, self.metrics):
                if observer is not None:
                    self.nurse.add_observer(observer)
            self.nurse.start()
            self._closers.append(self.nurse.close)
        if factory is None:
            return
        try:
            if gpio.switch_pin is not None:
                request = self.nurse.request if self.nurse is not None else None
                self.switch = AssistiveSwitch(gpio, factory, self.press, request)
                self._closers.append(self.switch.close)
            if gpio.nurse_call.reset_pin is not None and self.nurse is not None:
                reset = ResetInput(gpio, factory, self.nurse.reset)
                self._closers.append(reset.close)
        except Exception as exc:  # noqa: BLE001 - a pin already in use
            self._gpio_failed("assistive switch or nurse call reset input unavailable; see "
                              "the journal", exc)

    def _nurse_problem(self, message: str) -> None:
        """From the nurse request's thread: the relay failed or reads back wrong."""
        self._gpio_failed(f"nurse call relay not working: {message}", message)

    def _start_night(self) -> None:
        if not self.settings.night.enabled:
            return
        from kiosk.night import NightProfile

        self.night = NightProfile(self.settings.night, self.settings.audio,
                                  self.audio.playback, self.audio.cues, self.light,
                                  now=self._local_time)
        self.controller.add_observer(self.night)
        self.night.start()
        self._closers.append(self.night.close)

    def gpio_health(self) -> tuple[bool, str]:
        """For the start-up self-check: did the button and light pins open (and the switch,
        and the nurse call relay, read back)."""
        if self.gpio_problem is not None:
            return False, self.gpio_problem
        parts = "button and light"
        if self.switch is not None:
            parts += f", switch ({self.switch.role})"
        if self.nurse is not None:
            parts += (f", nurse call relay ({'closed' if self.nurse.contact_closed else 'open'}"
                      ", read back)")
        return True, f"{parts} pins open ({self.settings.gpio.pin_factory})"

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

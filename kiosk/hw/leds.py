"""The status light: one LED that shows the kiosk's state by its rhythm (and colour, if RGB).

The light is an observer of the controller's state changes. A patient who cannot tell colours
apart still tells the states apart by rhythm alone (see `kiosk.settings.DEFAULT_PATTERNS`):

==========  ==============  ===================================================
state       mode            what the patient sees
==========  ==============  ===================================================
idle        dim             a faint glow (a single on/off LED stays dark)
connecting  blink 0.5/0.5   a steady, calm blink
listening   on              solid light: "talk now"
thinking    double_blink    blink-blink, pause
speaking    pulse           slow breathing fade (a single LED: slow blink)
error       blink 0.1/0.1   fast flicker
==========  ==============  ===================================================

Each LED part is a small driver class (single, PWM, RGB, none; `kiosk.hw.led_parts`) saying
*how* to show a mode; :class:`StatusLight` decides *what* to show. gpiozero runs blink and
pulse in its own stoppable threads; only ``double_blink``, which gpiozero lacks, runs in a
thread of ours, built the same way (a `GPIOThread` whose loop waits on its `stopping` event).

Two things go on top of the state's pattern:

* a latched **nurse request** (:meth:`StatusLight.set_overlay`): every few seconds three quick
  flashes (magenta on an RGB LED) interrupt the state's own pattern, which shows in between,
  so both stay readable by rhythm alone;
* the **night profile** (:meth:`StatusLight.set_night`): every level is scaled down (PWM and
  RGB LEDs; a plain LED cannot dim) and the idle light is off.
"""

from __future__ import annotations

import threading
from itertools import cycle
from typing import TYPE_CHECKING

from gpiozero import LED, PWMLED, RGBLED
from gpiozero.pins import Factory
from gpiozero.threads import GPIOThread

from kiosk.hw.led_parts import DRIVERS, double_blink_steps, parse_color
from kiosk.settings import GpioSettings, LedPattern
from kiosk.states import State, StateChange

if TYPE_CHECKING:
    from kiosk.nurse import NurseCallChange

MODES = ("off", "on", "dim", "blink", "double_blink", "pulse")

# A latched nurse request: three quick flashes, then the state's own pattern for a while.
# No state uses a burst of three, so it reads as "a nurse was called" on any LED.
NURSE_FLASH = LedPattern(mode="blink", on_s=0.15, off_s=0.15, brightness=1.0, color="#ff00ff")
NURSE_FLASHES = 3
NURSE_STATE_S = 2.0  # the state's own pattern between two bursts


class StatusLight:
    """The kiosk's status LED, following the controller's state.

    Three kinds of part are supported, chosen by `gpio.led_kind`:

    * ``single`` — any LED with a series resistor (330 Ω for 3.3 V) from `led_pin` to ground
      (anode to the pin). On or off only, via gpiozero's :class:`~gpiozero.LED`.
    * ``pwm`` — the same wiring, driven with PWM (:class:`~gpiozero.PWMLED`) so it can glow
      dimly and fade.
    * ``rgb`` — an RGB LED (:class:`~gpiozero.RGBLED`) with a resistor on each of its red,
      green and blue legs to the three `rgb_pins`. A common-cathode part has its long leg to
      ground; a common-anode part has it to 3V3 and needs ``led_active_high: false``.
    * ``none`` — no light; every call does nothing.

    Give it to the controller as an observer, or drive it yourself::

        light = StatusLight(GpioSettings(led_kind="pwm", led_pin=18), factory)
        light.show(State.LISTENING)   # solid
        light.close()

    A single LED cannot dim (``dim`` leaves it dark) or fade (``pulse`` becomes a slow blink,
    on for ``on_s + off_s`` and off as long). A PWM LED uses `brightness` for ``on`` and
    ``dim``; its blinks and pulses reach full brightness. An RGB LED shows the pattern's
    `color` scaled by `brightness` in every mode.

    Switching state stops the running pattern (gpiozero's blink thread or our double-blink
    thread) before the next starts, so exactly one pattern runs and :meth:`show` returns
    within milliseconds. Calls may come from any thread. As a controller observer the light
    only notes the newest state: a thread of its own shows it, so the state machine never
    waits on a pin write or on a blink thread to stop.

    :param gpio:
        The `gpio` settings. Read: `led_kind`, `led_pin` (single, pwm), `rgb_pins` (red,
        green, blue), `led_active_high` (``False`` for common-anode parts, or any LED wired
        from 3V3 to the pin) and the per-state patterns via :meth:`GpioSettings.pattern`.
        Every pattern's mode and colour are checked when the light is built (ValueError).
    :param factory:
        The gpiozero pin factory: ``open_pins(gpio).factory`` (:func:`kiosk.hw.pins.open_pins`).
    """

    def __init__(self, gpio: GpioSettings, factory: Factory) -> None:
        self._gpio = gpio
        # Check every state's pattern now, so a mistake fails at start-up, not mid-session.
        for state in State:
            pattern = gpio.pattern(state.value)
            if pattern.mode not in MODES:
                raise ValueError(f"LED mode {pattern.mode!r} for state {state.value} is not one "
                                 f"of {', '.join(MODES)}")
            parse_color(pattern.color)
        self._lock = threading.Lock()
        self._sequence: GPIOThread | None = None
        self._state: State | None = None
        self._closed = False
        self._driver = DRIVERS[gpio.led_kind](gpio, factory)
        self._wanted: State | None = None  # the newest state the controller announced
        self._wake = threading.Event()
        self._shower: threading.Thread | None = None
        self._overlay = False  # a nurse request is latched
        self._night: float | None = None  # the night's brightness factor; None by day

    @property
    def state(self) -> State | None:
        """The state being shown, or None before the first :meth:`show`."""
        return self._state

    @property
    def device(self) -> LED | PWMLED | RGBLED | None:
        """The gpiozero device behind the light (None for ``led_kind: none``)."""
        return self._driver.device

    @property
    def overlay(self) -> bool:
        """Whether the nurse request's flashes are shown on top of the state."""
        return self._overlay

    @property
    def night(self) -> float | None:
        """The night's brightness factor, or None by day."""
        return self._night

    def on_state_change(self, change: StateChange) -> None:
        """Observer hook: show the new state (on the light's own thread; returns at once)."""
        self._wanted = change.new  # one reference: the shower takes the newest
        self._wake_shower()

    def on_nurse_call(self, change: NurseCallChange) -> None:
        """Nurse request observer: the flashes while a request is latched."""
        self.set_overlay(change.active)

    def set_overlay(self, on: bool) -> None:
        """Show (or stop showing) a latched nurse request on top of the state. Returns at
        once; the light's own thread redraws."""
        if on != self._overlay:
            self._overlay = on
            self._redraw()

    def set_night(self, brightness: float | None) -> None:
        """Night: every level times `brightness` (0-1) and the idle light off; None: day.
        Returns at once; the light's own thread redraws."""
        if brightness != self._night:
            self._night = brightness
            self._redraw()

    def _redraw(self) -> None:
        if self._wanted is None:
            self._wanted = self._state  # shown directly so far (at start)
        self._wake_shower()

    def _wake_shower(self) -> None:
        if self._shower is None and not self._closed:
            self._shower = threading.Thread(target=self._show_wanted, name="status-light",
                                            daemon=True)
            self._shower.start()
        self._wake.set()

    def _show_wanted(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            state = self._wanted
            if state is not None and not self._closed:
                self.show(state)

    def show(self, state: State | str) -> None:
        """Replace whatever the light is doing with `state`'s pattern.

        :param state: a :class:`~kiosk.states.State` or its word (``"thinking"``).
        """
        state = State(state)
        pattern = self._gpio.pattern(state.value)
        if self._night is not None and state is State.IDLE:
            pattern = LedPattern(mode="off")  # a dark room at night
        with self._lock:
            if self._closed:
                return
            self._stop_sequence()
            self._state = state
            driver = self._driver
            driver.scale = 1.0 if self._night is None else self._night
            if self._overlay:
                driver.off()
                self._sequence = GPIOThread(self._play_overlay, (pattern,),
                                            name=f"status-light-nurse-{state.value}")
                self._sequence.start()
                return
            if pattern.mode == "double_blink":
                driver.off()  # stops gpiozero's thread here, before ours starts
                self._sequence = GPIOThread(self._play, (double_blink_steps(pattern), pattern),
                                            name=f"status-light-{state.value}")
                self._sequence.start()
                return
            self._start_mode(pattern)

    def _start_mode(self, pattern: LedPattern) -> None:
        """Start a mode that runs by itself (gpiozero's threads): off, on, dim, blink,
        pulse."""
        driver = self._driver
        if pattern.mode == "off":
            driver.off()
            return
        modes = {"on": driver.on, "dim": driver.dim, "blink": driver.blink,
                 "pulse": driver.pulse}
        modes[pattern.mode](pattern)  # the mode was checked in __init__

    def close(self) -> None:
        """Stop any pattern, turn the LED off and release its pins. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_sequence()
            self._driver.close()
        shower, self._shower = self._shower, None
        if shower is not None:
            self._wake.set()
            shower.join(2.0)

    def __enter__(self) -> StatusLight:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _stop_sequence(self) -> None:
        if self._sequence is not None:
            self._sequence.stop()  # sets `stopping` and joins: no write after this returns
            self._sequence = None

    def _play(self, steps: list[tuple[bool, float]], pattern: LedPattern) -> None:
        stopping = threading.current_thread().stopping  # type: ignore[attr-defined]
        for lit, seconds in cycle(steps):
            self._driver.flash(lit, pattern)
            if stopping.wait(seconds):
                break

    def _play_overlay(self, pattern: LedPattern) -> None:
        """The nurse request's bursts with the state's own pattern in between, until
        stopped (a new state, the request reset, close)."""
        stopping = threading.current_thread().stopping  # type: ignore[attr-defined]
        driver = self._driver
        burst = [(lit, NURSE_FLASH.on_s if lit else NURSE_FLASH.off_s)
                 for _ in range(NURSE_FLASHES) for lit in (True, False)]
        while True:
            driver.off()  # stops gpiozero's thread of the state's pattern
            for lit, seconds in burst:
                driver.flash(lit, NURSE_FLASH)
                if stopping.wait(seconds):
                    return
            if pattern.mode == "double_blink":
                elapsed = 0.0
                for lit, seconds in cycle(double_blink_steps(pattern)):
                    driver.flash(lit, pattern)
                    if stopping.wait(seconds):
                        return
                    elapsed += seconds
                    if elapsed >= NURSE_STATE_S:
                        break
            else:
                self._start_mode(pattern)
                if stopping.wait(NURSE_STATE_S):
                    return

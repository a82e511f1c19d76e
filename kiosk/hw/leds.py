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

Each LED part is a small driver class (single, PWM, RGB, none) saying *how* to show a mode;
:class:`StatusLight` decides *what* to show. gpiozero runs blink and pulse in its own stoppable
threads; only ``double_blink``, which gpiozero lacks, runs in a thread of ours, built the same
way (a `GPIOThread` whose loop waits on its `stopping` event).
"""

from __future__ import annotations

import re
import threading
from itertools import cycle

from gpiozero import LED, PWMLED, RGBLED
from gpiozero.pins import Factory
from gpiozero.threads import GPIOThread

from kiosk.settings import GpioSettings, LedPattern
from kiosk.states import State, StateChange

Color = tuple[float, float, float]
MODES = ("off", "on", "dim", "blink", "double_blink", "pulse")

# double_blink: the pause after the two quick blinks, in quick blinks (on_s + off_s). Three is
# long enough that the pair reads as one "blink-blink" and not as an even blink.
DOUBLE_BLINK_PAUSE_BLINKS = 3


def parse_color(text: str) -> Color:
    """``"#ffbf00"`` -> ``(1.0, 0.749..., 0.0)``; raises ValueError naming the bad value."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        raise ValueError(f"LED colour {text!r} is not of the form #rrggbb")
    red, green, blue = (int(text[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return (red, green, blue)


def double_blink_steps(pattern: LedPattern) -> list[tuple[bool, float]]:
    """One cycle of ``double_blink`` as (lit, seconds) steps: on, off, on, pause."""
    pause_s = DOUBLE_BLINK_PAUSE_BLINKS * (pattern.on_s + pattern.off_s)
    return [(True, pattern.on_s), (False, pattern.off_s), (True, pattern.on_s), (False, pause_s)]


class _Driver:
    """How one kind of LED part shows each mode. The base class is the ``none`` kind."""

    device: LED | PWMLED | RGBLED | None = None

    def __init__(self, gpio: GpioSettings, factory: Factory) -> None:
        """The ``none`` kind claims no pins."""

    def off(self) -> None:
        """Dark, and any gpiozero blink thread stopped."""

    def on(self, pattern: LedPattern) -> None:
        """Steady light."""

    def dim(self, pattern: LedPattern) -> None:
        """A faint steady glow."""

    def blink(self, pattern: LedPattern) -> None:
        """Hard on/off blinking in gpiozero's background thread."""

    def pulse(self, pattern: LedPattern) -> None:
        """Slow fading in and out (or the closest the part can do)."""

    def flash(self, lit: bool, pattern: LedPattern) -> None:
        """One step of our own sequences (double_blink): lit or dark, right now."""

    def close(self) -> None:
        """Turn the light off and release its pins."""
        if self.device is not None and not self.device.closed:
            self.device.off()
            self.device.close()


class _SingleDriver(_Driver):
    # A plain LED on one pin can only be on or off: dim is off, pulse is a slow blink.
    device: LED

    def __init__(self, gpio: GpioSettings, factory: Factory) -> None:
        self.device = LED(gpio.led_pin, active_high=gpio.led_active_high, pin_factory=factory)

    def off(self) -> None:
        self.device.off()

    def on(self, pattern: LedPattern) -> None:
        self.device.on()

    def dim(self, pattern: LedPattern) -> None:
        self.device.off()

    def blink(self, pattern: LedPattern) -> None:
        self.device.blink(on_time=pattern.on_s, off_time=pattern.off_s)

    def pulse(self, pattern: LedPattern) -> None:
        # On for one whole fade cycle, off for one: clearly slower than the blink patterns.
        period_s = pattern.on_s + pattern.off_s
        self.device.blink(on_time=period_s, off_time=period_s)

    def flash(self, lit: bool, pattern: LedPattern) -> None:
        self.device.value = lit


class _PwmDriver(_Driver):
    # brightness sets the steady level (on, dim); gpiozero's blink and pulse go to full.
    device: PWMLED

    def __init__(self, gpio: GpioSettings, factory: Factory) -> None:
        self.device = PWMLED(gpio.led_pin, active_high=gpio.led_active_high,
                             pin_factory=factory)

    def off(self) -> None:
        self.device.off()

    def on(self, pattern: LedPattern) -> None:
        self.device.value = pattern.brightness

    dim = on

    def blink(self, pattern: LedPattern) -> None:
        self.device.blink(on_time=pattern.on_s, off_time=pattern.off_s)

    def pulse(self, pattern: LedPattern) -> None:
        self.device.pulse(fade_in_time=pattern.on_s, fade_out_time=pattern.off_s)

    def flash(self, lit: bool, pattern: LedPattern) -> None:
        self.device.value = 1.0 if lit else 0.0


class _RgbDriver(_Driver):
    # The pattern's colour scaled by its brightness is "lit", in every mode.
    device: RGBLED

    def __init__(self, gpio: GpioSettings, factory: Factory) -> None:
        red, green, blue = gpio.rgb_pins
        self.device = RGBLED(red, green, blue, active_high=gpio.led_active_high, pwm=True,
                             pin_factory=factory)

    @staticmethod
    def lit(pattern: LedPattern) -> Color:
        r, g, b = parse_color(pattern.color)
        k = pattern.brightness
        return (r * k, g * k, b * k)

    def off(self) -> None:
        self.device.off()

    def on(self, pattern: LedPattern) -> None:
        self.device.value = self.lit(pattern)

    dim = on

    def blink(self, pattern: LedPattern) -> None:
        self.device.blink(on_time=pattern.on_s, off_time=pattern.off_s,
                          on_color=self.lit(pattern))

    def pulse(self, pattern: LedPattern) -> None:
        self.device.pulse(fade_in_time=pattern.on_s, fade_out_time=pattern.off_s,
                          on_color=self.lit(pattern))

    def flash(self, lit: bool, pattern: LedPattern) -> None:
        self.device.value = self.lit(pattern) if lit else (0.0, 0.0, 0.0)


_DRIVERS: dict[str, type[_Driver]] = {
    "single": _SingleDriver,
    "pwm": _PwmDriver,
    "rgb": _RgbDriver,
    "none": _Driver,
}


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
        self._driver = _DRIVERS[gpio.led_kind](gpio, factory)
        self._wanted: State | None = None  # the newest state the controller announced
        self._wake = threading.Event()
        self._shower: threading.Thread | None = None

    @property
    def state(self) -> State | None:
        """The state being shown, or None before the first :meth:`show`."""
        return self._state

    @property
    def device(self) -> LED | PWMLED | RGBLED | None:
        """The gpiozero device behind the light (None for ``led_kind: none``)."""
        return self._driver.device

    def on_state_change(self, change: StateChange) -> None:
        """Observer hook: show the new state (on the light's own thread; returns at once)."""
        self._wanted = change.new  # one reference: the shower takes the newest
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
        with self._lock:
            if self._closed:
                return
            self._stop_sequence()
            self._state = state
            driver = self._driver
            if pattern.mode == "double_blink":
                driver.off()  # stops gpiozero's thread here, before ours starts
                self._sequence = GPIOThread(self._play, (double_blink_steps(pattern), pattern),
                                            name=f"status-light-{state.value}")
                self._sequence.start()
                return
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

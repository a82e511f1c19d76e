"""The LED parts the status light can drive: how a plain, a PWM and an RGB LED (or none)
each show a mode. `kiosk.hw.leds.StatusLight` decides *what* to show; these say *how*."""

from __future__ import annotations

import re

from gpiozero import LED, PWMLED, RGBLED
from gpiozero.pins import Factory

from kiosk.settings import GpioSettings, LedPattern

Color = tuple[float, float, float]

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


class ScaledPWMLED(PWMLED):
    """A PWMLED whose every level, its own blinks and pulses included, is multiplied by
    `scale` (the night profile). gpiozero's blink thread writes through `_write` too, which is
    why the scaling sits there rather than in each mode."""

    scale = 1.0

    def _write(self, value: float) -> None:
        super()._write(value * self.scale)


class Driver:
    """How one kind of LED part shows each mode. The base class is the ``none`` kind."""

    device: LED | PWMLED | RGBLED | None = None
    scale = 1.0  # brightness factor of the night profile (parts that can dim)

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


class SingleDriver(Driver):
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


class PwmDriver(Driver):
    # brightness sets the steady level (on, dim); gpiozero's blink and pulse go to full (all
    # of them times `scale` at night).
    device: ScaledPWMLED

    def __init__(self, gpio: GpioSettings, factory: Factory) -> None:
        self.device = ScaledPWMLED(gpio.led_pin, active_high=gpio.led_active_high,
                                   pin_factory=factory)

    @property
    def scale(self) -> float:
        return self.device.scale

    @scale.setter
    def scale(self, value: float) -> None:
        self.device.scale = value

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


class RgbDriver(Driver):
    # The pattern's colour scaled by its brightness is "lit", in every mode.
    device: RGBLED

    def __init__(self, gpio: GpioSettings, factory: Factory) -> None:
        red, green, blue = gpio.rgb_pins
        self.device = RGBLED(red, green, blue, active_high=gpio.led_active_high, pwm=True,
                             pin_factory=factory)

    def lit(self, pattern: LedPattern) -> Color:
        r, g, b = parse_color(pattern.color)
        k = pattern.brightness * self.scale
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


DRIVERS: dict[str, type[Driver]] = {
    "single": SingleDriver,
    "pwm": PwmDriver,
    "rgb": RgbDriver,
    "none": Driver,
}

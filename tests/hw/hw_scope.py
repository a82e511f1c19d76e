"""A tiny logic analyser for gpiozero mock pins: what a pin did, and when.

A `MockPin` records every change as `PinState(timestamp, state)`, the timestamp being the time
since the previous change. `clear_states()` starts a fresh recording from the current level.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gpiozero.pins.mock import MockPin


def wait_until(predicate: Callable[[], object], timeout_s: float, poll_s: float = 0.005) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passes; returns its last verdict."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(poll_s)


def timeline(pin: MockPin) -> list[tuple[float, float]]:
    """(seconds since clear_states, level) for each change, the starting level at 0.0."""
    at, out = 0.0, []
    for change in list(pin.states):
        at += change.timestamp
        out.append((at, float(change.state)))
    return out


def segments(pin: MockPin) -> list[tuple[float, float]]:
    """(level, seconds held) for each completed level after the first change.

    The level before the first change is left out: its length is just how long the test took
    to call `show()` after clearing.
    """
    states = list(pin.states)
    return [(float(states[i].state), states[i + 1].timestamp) for i in range(1, len(states) - 1)]


def close_to(actual: float, expected: float, rel: float = 0.35, abs_s: float = 0.06) -> bool:
    """Timing tolerance for a loaded two-core machine: late by scheduling, rarely early."""
    return abs(actual - expected) <= rel * expected + abs_s


def wait_segments(pin: MockPin, count: int, timeout_s: float) -> list[tuple[float, float]]:
    """Wait until `count` levels have completed, then return them (fails on timeout)."""
    assert wait_until(lambda: len(segments(pin)) >= count, timeout_s), (
        f"pin {pin.info.name} completed only {segments(pin)} within {timeout_s} s")
    return segments(pin)[:count]


def assert_rhythm(pin: MockPin, expected: list[tuple[float, float]], timeout_s: float) -> None:
    """The pin went through `expected` (level, seconds) steps, levels exact-ish, times close."""
    got = wait_segments(pin, len(expected), timeout_s)
    for i, ((level, seconds), (want_level, want_s)) in enumerate(zip(got, expected, strict=True)):
        assert abs(level - want_level) < 0.01, f"step {i}: level {level}, want {want_level}: {got}"
        assert close_to(seconds, want_s), f"step {i}: {seconds:.3f} s, want {want_s} s: {got}"

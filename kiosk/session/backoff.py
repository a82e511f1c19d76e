"""Exponential backoff with jitter and a cap, for gateway and reconnect retries."""

from __future__ import annotations

import random


class Backoff:
    """Delays initial_s, 2*initial_s, 4*initial_s ... capped at max_s, each shortened by up to
    `jitter` (a fraction) at random so a ward of kiosks does not retry in lock-step."""

    def __init__(self, initial_s: float, max_s: float, *, factor: float = 2.0,
                 jitter: float = 0.25, rng: random.Random | None = None) -> None:
        if initial_s <= 0 or max_s < initial_s or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial_s <= max_s, factor >= 1, 0 <= jitter < 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        base = min(self.max_s, self.initial_s * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """A success: the next failure starts again from initial_s."""
        self.attempts = 0

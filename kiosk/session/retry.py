"""When to try again, written for a patient waiting at the bed.

Transient failures (the gateway's 5xx and 429 with or without Retry-After, timeouts, refused
connections, DNS, a dropped link) are retried inside the same press while the kiosk shows
`connecting` (with its "still connecting" tick), with exponential backoff and jitter, until
the give-up time; then the visit fails and the kiosk shows `error`. Anything a retry cannot
fix (a wrong credential, a configuration mistake, something that is not our gateway) fails at
once, so IT staff see it and patients are not kept waiting for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kiosk.session.backoff import Backoff
from kiosk.session.errors import GatewayError
from kiosk.session.link import LinkError

# Error kinds a later attempt can cure: GatewayError kinds and LinkError kinds.
TRANSIENT = frozenset({"unavailable", "rate_limited", "network"})


def transient(error: GatewayError | LinkError) -> bool:
    """True when waiting and trying again can help."""
    return error.kind in TRANSIENT


class Attempts:
    """The retries of one press (or one reconnect): delays and the deadline to give up.

    >>> attempts = Attempts(initial_s=1, max_s=10, give_up_s=60)
    >>> delay = attempts.next_delay(error)   # None: give up now
    """

    def __init__(self, initial_s: float, max_s: float, give_up_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._backoff = Backoff(initial_s, max(max_s, initial_s))
        self._clock = clock
        self.started_at = clock()
        self.give_up_s = give_up_s
        self.count = 0

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.started_at

    def next_delay(self, error: GatewayError | LinkError) -> float | None:
        """Seconds to wait before the next attempt after `error`, or None to give up (the
        error cannot be cured by waiting, or the wait would end past the give-up time)."""
        self.count += 1
        if not transient(error):
            return None
        delay = self._backoff.next_delay()
        retry_after = getattr(error, "retry_after_s", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if self.elapsed_s + delay > self.give_up_s:
            return None
        return delay

"""What the GPIO inputs posted (to the controller's queue, or a nurse request's), collected by
the tests."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")

QUIET_S = 0.25  # how long "nothing else arrives" is watched for


def drain(events: queue.Queue[T], quiet_s: float = QUIET_S) -> list[T]:
    """Everything posted until nothing more arrives for `quiet_s`."""
    got: list[T] = []
    while True:
        try:
            got.append(events.get(timeout=quiet_s))
        except queue.Empty:
            return got

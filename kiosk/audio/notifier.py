"""Hand events from an audio callback to listeners without running them in the callback.

PortAudio's thread must never wait on a lock, a log handler or a slow listener, so the
callback only appends to a deque (atomic under the GIL) and sets an Event; a small daemon
thread delivers the events in order.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Listener = Callable[[str, str], None]


class Notifier:
    """Deliver ``(kind, subject)`` pairs to one listener from a background thread."""

    def __init__(self, name: str) -> None:
        self._queue: collections.deque[tuple[str, str]] = collections.deque(maxlen=1024)
        self._wake = threading.Event()
        self._stop = False
        self._listener: Listener | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def set_listener(self, listener: Listener | None) -> None:
        self._listener = listener

    def post(self, kind: str, subject: str) -> None:
        """Queue an event (safe from a callback: no lock, no allocation beyond the tuple)."""
        self._idle.clear()
        self._queue.append((kind, subject))
        self._wake.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every queued event has been delivered (tests, shutdown)."""
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                kind, subject = self._queue.popleft()
                listener = self._listener
                if listener is None:
                    continue
                try:
                    listener(kind, subject)
                except Exception:  # a buggy listener must not kill audio event delivery
                    log.exception("audio event listener failed on (%s, %s)", kind, subject)
            if not self._queue:
                self._idle.set()

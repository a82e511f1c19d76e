"""Where a test call's result goes: the journal, the result file `voice-kiosk test-call`
waits for, and the metrics.

One `TestCallReports` lives as long as the daemon (a reload keeps its counts). It is called
from the conversation's loop and the controller's thread, so it never waits: the journal has
its own writer thread, the result file is written by a thread of this reporter, and the
metrics read a snapshot when their file is written.

The result file (`test_call.result_file`) holds one JSON object, replaced atomically: the
running call (`"result": "running"`), then its result. The command line tells a new result
from the one before by content, so requests that overlap a running call get its result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kiosk.files import write_atomically
from kiosk.service.metrics import PREFIX, Family
from kiosk.settings import TestCallSettings
from kiosk.test_call.call import RESULTS, STEPS, TestCall, TestCallResult

log = logging.getLogger("kiosk.test_call")

# Failures are warnings (IT must look); refusals and abandoned calls only say what happened.
_LEVEL = {"ok": logging.INFO, "failed": logging.WARNING, "refused": logging.INFO,
          "abandoned": logging.INFO}


class TestCallReports:
    """The daemon's record of its test calls.

    >>> reports = TestCallReports(settings.test_call, settings.kiosk.id)
    >>> metrics.add_families(reports.families)
    >>> TestCall(settings, reports, controller.post).request()
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, settings: TestCallSettings, kiosk_id: str) -> None:
        self.settings = settings
        self.kiosk_id = kiosk_id
        self._lock = threading.Lock()  # the counters only; never held across I/O
        self._totals: Counter[str] = Counter()
        self._last: TestCallResult | None = None  # the last call that ran to ok or failed
        self.running: str | None = None  # the id of the call in progress
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-call-file")
        self._write_failed = False

    def configure(self, settings: TestCallSettings, kiosk_id: str) -> None:
        """After a reload."""
        self.settings, self.kiosk_id = settings, kiosk_id

    # -- kiosk.test_call.call.Reporter -------------------------------------------------------

    def started(self, call: TestCall) -> None:
        with self._lock:
            self.running = call.call_id
        self._write_soon({"id": call.call_id, "result": "running", "reason": "",
                          "requested_at": call.requested_at, "kiosk": self.kiosk_id,
                          "pid": os.getpid()})

    def finished(self, result: TestCallResult) -> None:
        with self._lock:
            self._totals[result.result] += 1
            if result.result in ("ok", "failed"):
                self._last = result
            if self.running == result.call_id:
                self.running = None
        fields = {"TEST_CALL_ID": result.call_id, "TEST_CALL_RESULT": result.result}
        for step, seconds in result.timings_s.items():
            fields[f"TEST_CALL_{step.upper()}_S"] = f"{seconds:.3f}"
        log.log(_LEVEL[result.result], "%s", result.summary(), extra=fields)
        self._write_soon({**result.to_json(), "kiosk": self.kiosk_id, "pid": os.getpid()})

    # -- the result file ---------------------------------------------------------------------

    def _write_soon(self, record: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # closed: the daemon is stopping
            self._writer.submit(self._write, self.settings.result_path(), record)

    def _write(self, path: str, record: dict[str, Any]) -> None:
        try:
            # The command line may run as another user (root, over ssh): readable by all.
            write_atomically(path, json.dumps(record, indent=1) + "\n", mode=0o644)
        except OSError as exc:
            if not self._write_failed:
                log.warning("test call: cannot write its result to %s (%s); "
                            "`voice-kiosk test-call` will not see it. Set test_call."
                            "result_file to a file the service may write", path,
                            exc.strerror or exc)
            self._write_failed = True
            return
        self._write_failed = False

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is pending (the daemon is stopping)."""
        done = threading.Event()
        with contextlib.suppress(RuntimeError):
            self._writer.submit(done.set)
        done.wait(timeout_s)
        self._writer.shutdown(wait=False)

    # -- metrics -----------------------------------------------------------------------------

    def families(self) -> list[Family]:
        """The test call's metrics; none before the first request (alerts tell "never tested"
        from "failed"), and the last call's only once one has run to ok or failed."""
        k = {"kiosk": self.kiosk_id}
        with self._lock:
            totals, last = dict(self._totals), self._last
        if not totals:
            return []
        out = [Family(f"{PREFIX}_test_calls_total", "counter",
                      "Remote test calls by result (ok, failed, refused: a patient was using "
                      "the kiosk, abandoned: a press or a stop came first).",
                      [({**k, "result": r}, totals.get(r, 0)) for r in RESULTS])]
        if last is None:
            return out
        out += [
            Family(f"{PREFIX}_test_call_last_success", "gauge",
                   "1 if the last test call that ran got its answer, 0 if it failed.",
                   [(k, 1 if last.ok else 0)]),
            Family(f"{PREFIX}_test_call_last_timestamp_seconds", "gauge",
                   "Unix time the last test call that ran ended.", [(k, last.finished_at)]),
        ]
        steps = [({**k, "step": step}, last.timings_s[step])
                 for step in STEPS if step in last.timings_s]
        if steps:  # a call failed before it began (a fault that blocks visits) has none
            out.append(Family(f"{PREFIX}_test_call_last_duration_seconds", "gauge",
                              "Seconds from the start of the last test call that ran to "
                              "each step it reached: grant, link, first_answer_audio, total.",
                              steps))
        return out

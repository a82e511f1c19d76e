"""`voice-kiosk test-call`: ask the running daemon for a test call and wait for its result.

It sends SIGUSR2 to the daemon (systemd's MainPID of the unit, or `--pid`) and waits until the
result file (`test_call.result_file`) holds a result other than the one it held before; it
prints that result's line and exits with a code a script can act on. Nothing else passes
between the two: a signal and a file, which work over ssh, from Ansible, and as root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any, TextIO

from kiosk.settings import Settings
from kiosk.test_call.call import RESULTS

EXIT_OK = 0
EXIT_FAILED = 1  # the test call ran and got no answer: a patient's visit would fail too
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: no daemon to ask, or no result from it in time
EXIT_BUSY = 75  # EX_TEMPFAIL: refused or abandoned (a patient uses the kiosk): try later
EXIT_NOPERM = 77  # EX_NOPERM: not allowed to signal the daemon
EXIT_CODES = {"ok": EXIT_OK, "failed": EXIT_FAILED, "refused": EXIT_BUSY,
              "abandoned": EXIT_BUSY}
START_MARGIN_S = 15.0  # beyond test_call.timeout_s: making the question, starting the visit
POLL_S = 0.1


class Unreachable(Exception):
    """The daemon cannot be asked: the message says why and what to do."""

    def __init__(self, message: str, code: int = EXIT_UNAVAILABLE) -> None:
        super().__init__(message)
        self.code = code


def main_pid(unit: str) -> int:
    """The unit's main process, as systemd knows it."""
    try:
        done = subprocess.run(["systemctl", "show", "--property=MainPID", "--value", unit],
                              capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise Unreachable("no systemctl here to find the daemon: give its process id with "
                          "--pid") from None
    except subprocess.TimeoutExpired:
        raise Unreachable("systemctl did not answer within 30 s") from None
    pid = done.stdout.strip()
    if done.returncode != 0 or not pid.isdigit():
        raise Unreachable(f"systemctl cannot tell the main process of {unit}: "
                          f"{done.stderr.strip() or pid or 'no answer'}")
    if pid == "0":
        raise Unreachable(f"{unit} is not running: `systemctl status {unit}`, then "
                          f"`systemctl start {unit}`")
    return int(pid)


def read_result(path: str) -> dict[str, Any] | None:
    """The result file's record, or None while there is none (or it cannot be read yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def run_test_call(settings: Settings, pid: int | None, unit: str, timeout_s: float | None,
                  as_json: bool, out: TextIO, err: TextIO) -> int:
    """The command: request, wait, print; returns the exit code (see EXIT_*)."""
    path = settings.test_call.result_path()
    wait_s = timeout_s if timeout_s is not None else settings.test_call.timeout_s + START_MARGIN_S
    try:
        target = pid if pid is not None else main_pid(unit)
        before = read_result(path)
        _request(target)
        print(f"voice-kiosk: test call requested (pid {target}); waiting up to {wait_s:g} s "
              f"for its result in {path}", file=err)
        record = _wait(path, before, target, wait_s)
    except Unreachable as exc:
        print(f"voice-kiosk test-call: {exc}", file=err)
        return exc.code
    if as_json:
        json.dump(record, out, indent=1)
        out.write("\n")
    else:
        print(record.get("summary") or f"test call {record.get('id')} {record['result']}",
              file=out)
    return EXIT_CODES[record["result"]]


def _request(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        raise Unreachable(f"no process {pid}: is voice-kiosk running?") from None
    except PermissionError:
        raise Unreachable(f"not allowed to signal process {pid} (the daemon runs as another "
                          "user): run `sudo voice-kiosk test-call`", EXIT_NOPERM) from None


def _wait(path: str, before: dict[str, Any] | None, pid: int, wait_s: float
          ) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        record = read_result(path)
        if record is not None and record != before and record.get("result") in RESULTS:
            return record
        if not _alive(pid):
            raise Unreachable(f"the daemon (pid {pid}) exited before the test call's result: "
                              "`journalctl -u voice-kiosk -n 50`")
        if time.monotonic() >= deadline:
            running = record is not None and record != before
            raise Unreachable(
                f"no result within {wait_s:g} s in {path}" +
                (" (the test call started but did not end)" if running else
                 " (the daemon started no test call, or cannot write that file)") +
                "; `journalctl -u voice-kiosk -g 'test call'` says what happened")
        time.sleep(POLL_S)

"""A kiosk runs for months: 200 sessions in a row must not grow memory, files or threads."""

from __future__ import annotations

import os
import time

import pytest

from tests.e2e.signals import utterance

pytestmark = [pytest.mark.e2e, pytest.mark.audio, pytest.mark.slow]

SESSIONS = 200
TURN_EVERY = 25  # every 25th session also has a full spoken turn


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def settled(pid: int, limit: int, count=threads, timeout_s: float = 10.0) -> int:
    """The count once short-lived session threads have finished (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while (n := count(pid)) > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def session(kiosk, turn: bool) -> None:
    kiosk.press()
    kiosk.wait_state("listening")
    if turn:
        kiosk.say(utterance())
        kiosk.wait_state("speaking")
        kiosk.wait_state("listening")
    kiosk.press()
    kiosk.wait_state("idle")


@pytest.mark.timeout(600)
def test_200_sessions_do_not_leak(start_kiosk, sim):
    kiosk = start_kiosk()
    pid = kiosk.pid
    for i in range(20):  # warm up: caches, first allocations, lazily started threads
        session(kiosk, turn=i % 10 == 0)
    base_threads = settled(pid, 0, timeout_s=1.0)
    base_threads = settled(pid, base_threads)
    base_fds = settled(pid, fds(pid), count=fds)
    base_rss = rss_kib(pid)
    for i in range(SESSIONS):
        session(kiosk, turn=i % TURN_EVERY == 0)
    assert settled(pid, base_threads) <= base_threads
    assert settled(pid, base_fds, count=fds) <= base_fds
    growth_kib = rss_kib(pid) - base_rss
    print(f"\n{SESSIONS} sessions: RSS {base_rss} KiB -> +{growth_kib} KiB, "
          f"threads {base_threads}, fds {base_fds}")
    assert growth_kib < 2 * 1024  # issue 13: 200 visits grow RSS by less than 2 MiB
    assert kiosk.systemd.states().count("connecting") == SESSIONS + 20
    assert "error" not in kiosk.systemd.states()

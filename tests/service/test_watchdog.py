"""Watchdog pings through a real notification socket: cadence, health gating, WATCHDOG_PID."""

from __future__ import annotations

import os
import threading
import time

import pytest

from kiosk.service.notify import SystemdNotifier
from kiosk.service.watchdog import Watchdog, watchdog_interval_s


def ping_times(listener, count: int, timeout_s: float = 5.0) -> list[float]:
    times: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(times) < count and (left := deadline - time.monotonic()) > 0:
        if listener.receive(left) == "WATCHDOG=1":
            times.append(time.monotonic())
    assert len(times) == count, f"only {len(times)} of {count} pings in {timeout_s} s"
    return times


def test_interval_is_half_of_watchdog_usec():
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "junk"}) is None


def test_watchdog_pid_must_be_ours():
    env = {"WATCHDOG_USEC": "200000"}
    assert watchdog_interval_s({**env, "WATCHDOG_PID": str(os.getpid())}) == 0.1
    assert watchdog_interval_s({**env, "WATCHDOG_PID": str(os.getpid() + 1)}) is None


def test_pings_every_half_interval(notify_socket, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    dog = Watchdog(SystemdNotifier("k"), [lambda: True])
    dog.start()
    try:
        times = ping_times(notify_socket, 6)
    finally:
        dog.stop()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    mean = sum(gaps) / len(gaps)
    assert 0.05 <= mean <= 0.3, f"mean gap {mean:.3f} s, expected about 0.1 s"


def test_pings_stop_while_a_check_fails_and_resume(notify_socket,
                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    loop_alive = threading.Event()
    loop_alive.set()

    def controller_loop_alive() -> bool:
        return loop_alive.is_set()

    dog = Watchdog(SystemdNotifier("k"), [lambda: True, controller_loop_alive])
    dog.start()
    try:
        ping_times(notify_socket, 2)
        loop_alive.clear()
        # At most one ping was already under way; then silence for many intervals.
        notify_socket.receive(timeout_s=0.3)
        assert notify_socket.receive(timeout_s=0.6) is None
        loop_alive.set()
        ping_times(notify_socket, 1)
    finally:
        dog.stop()


def test_a_check_that_raises_counts_as_unhealthy(notify_socket,
                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")

    def audio_streams_alive() -> bool:
        raise RuntimeError("stream closed")

    dog = Watchdog(SystemdNotifier("k"), [audio_streams_alive])
    assert dog.healthy() is False
    dog.start()
    try:
        assert notify_socket.receive(timeout_s=0.5) is None
    finally:
        dog.stop()


def test_no_watchdog_usec_means_no_thread(notify_socket, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    dog = Watchdog(SystemdNotifier("k"), [lambda: True])
    dog.start()
    assert not dog.enabled and dog._thread is None
    assert notify_socket.receive(timeout_s=0.3) is None
    dog.stop()


def test_a_hung_controller_loop_stops_the_pings(notify_socket,
                                                monkeypatch: pytest.MonkeyPatch):
    """The daemon's real liveness check: the controller's heartbeat. An observer that blocks
    the controller thread (as a stuck LED or sound call would) must silence the watchdog."""
    from kiosk import events as ev
    from kiosk.controller import Controller
    from kiosk.settings import VisitSettings

    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    release = threading.Event()
    hung = threading.Event()

    class StuckObserver:
        def on_state_change(self, change) -> None:
            hung.set()
            release.wait(10)

    # No session is started (idle -> error only), so no conversation is needed.
    controller = Controller(VisitSettings(), conversation=None)  # type: ignore[arg-type]
    controller.add_observer(StuckObserver())
    controller.start()
    dog = Watchdog(SystemdNotifier("k"), [lambda: controller.alive(max_age_s=0.5)])
    dog.start()
    try:
        ping_times(notify_socket, 2)
        controller.post(ev.Fault("internal", "simulated hang"))
        assert hung.wait(5)
        # Pings continue until the heartbeat is 0.5 s old, then stop.
        deadline = time.monotonic() + 5
        while notify_socket.receive(timeout_s=0.8) is not None:
            assert time.monotonic() < deadline, "pings did not stop while the loop hung"
        release.set()
        ping_times(notify_socket, 1)  # the loop turns again: pings resume
    finally:
        release.set()
        dog.stop()
        controller.stop()

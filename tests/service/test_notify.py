"""SystemdNotifier against a real datagram socket, as systemd would read it."""

from __future__ import annotations

import time

import pytest

from kiosk.service.notify import SystemdNotifier
from kiosk.states import State, StateChange


def change(old: State, new: State, detail: str = "", kind: str | None = None) -> StateChange:
    return StateChange(old=old, new=new, detail=detail, visit_id="s-1",
                       at=time.monotonic(), error_kind=kind)


def test_ready_with_status(notify_socket):
    notifier = SystemdNotifier("ward3-bed12")
    assert notifier.ready(notifier.status_text("idle", "self-check ok"))
    fields = notify_socket.receive_fields()
    assert fields == {"READY": "1", "STATUS": "idle (ward3-bed12): self-check ok"}


def test_state_change_status_starts_with_the_state(notify_socket):
    notifier = SystemdNotifier("bed7")
    notifier.on_state_change(change(State.CONNECTING, State.LISTENING, "session ready"))
    status = notify_socket.receive_fields()["STATUS"]
    assert status.split()[0] == "listening"
    assert "bed7" in status and "session ready" in status

    notifier.on_state_change(change(State.LISTENING, State.ERROR, "gateway unavailable (503)",
                                    kind="unavailable"))
    status = notify_socket.receive_fields()["STATUS"]
    assert status == "error (bed7): unavailable: gateway unavailable (503)"


def test_status_cannot_inject_other_assignments(notify_socket):
    notifier = SystemdNotifier("k")
    notifier.on_state_change(change(State.IDLE, State.ERROR, "bad\nREADY=1\nSTOPPING=1"))
    data = notify_socket.receive()
    assert data is not None
    assert len(data.splitlines()) == 1 and data.startswith("STATUS=error")


def test_reloading_carries_monotonic_usec(notify_socket):
    notifier = SystemdNotifier("k")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = notify_socket.receive_fields()
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after
    assert fields["STATUS"].startswith("reloading")

    assert notifier.ready(notifier.status_text("idle", "configuration reloaded"))
    assert notify_socket.receive_fields()["READY"] == "1"


def test_stopping_and_watchdog(notify_socket):
    notifier = SystemdNotifier("k")
    notifier.watchdog_ping()
    assert notify_socket.receive_fields() == {"WATCHDOG": "1"}
    notifier.stopping()
    fields = notify_socket.receive_fields()
    assert fields["STOPPING"] == "1" and fields["STATUS"].startswith("stopping")


def test_without_notify_socket_nothing_is_sent(notify_socket, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NOTIFY_SOCKET")
    notifier = SystemdNotifier("k")
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.status("idle") is False
    notifier.on_state_change(change(State.IDLE, State.CONNECTING, "button pressed"))
    assert notifier.watchdog_ping() is False
    assert notify_socket.receive(timeout_s=0.2) is None

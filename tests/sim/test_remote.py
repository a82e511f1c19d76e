"""The simulator in its own process: the same API, records kept current across the process
boundary, waits that sleep until the child reports a change, and no orphan left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kiosk.sim import Limits, speech_like
from kiosk.sim.remote import SimulatorProcess
from tests.sim.conftest import Peer, grant, post
from tests.tlsca import PrivateCA


@pytest.fixture
def remote() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(answer_s=0.5) as sim:
        yield sim
    assert gone(sim.pid)


def gone(pid: int) -> bool:
    """The process no longer runs (it may linger as a zombie of a reaper that is not us)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        threading.Event().wait(0.05)


def test_knobs_and_commands_reach_the_child(remote: SimulatorProcess) -> None:
    assert remote.knobs.answer_s == 0.5  # given at start
    remote.knobs.gateway_status = 503
    assert remote.knobs.gateway_status == 503
    assert post(remote, "/api/voice/realtime-session", {},
                {"X-API-Key": remote.api_key})[0] == 503
    remote.knobs.gateway_status = None
    with pytest.raises(AttributeError):
        remote.knobs.no_such_knob = 1
    with pytest.raises(ValueError):
        remote.inject("no_such_fault")
    key = remote.create_api_key()
    remote.revoke_api_key(remote.api_key)
    assert post(remote, "/api/voice/realtime-session", {}, {"X-API-Key": key})[0] == 200
    assert [r.status for r in remote.gateway_requests] == [503, 200]
    email, password = remote.create_user("ward@example.org", "pw")
    assert post(remote, "/api/auth/login", {"email": email, "password": password})[0] == 200
    with pytest.raises(TypeError):
        SimulatorProcess(no_such_knob=1)


def test_a_held_connection_record_stays_current(remote: SimulatorProcess) -> None:
    g = grant(remote)
    peer = Peer(g["url"], g["auth"]["token"])
    peer.next("session.created")
    conn = remote.wait_for(lambda: remote.last_connection)
    speech = speech_like(1.0)
    peer.append(speech)
    remote.wait_for(lambda: len(conn.audio) == len(speech))
    assert np.array_equal(conn.audio, speech)  # decoded in the child, copied here
    peer.send({"type": "session.update", "session": {"type": "realtime", "audio": {
        "output": {"voice": "marin"}}}})
    peer.next("session.updated")
    # No call on `remote` in between: reading the held record fetched the change.
    assert conn.session["audio"]["output"]["voice"] == "marin"
    assert conn.client_types()[-1] == "session.update"
    assert remote.inject("error", code="invalid_value") == 1
    assert peer.next("error")["error"]["code"] == "invalid_value"
    peer.close()
    remote.wait_for(lambda: not conn.open)


def test_wait_for_sleeps_until_the_child_reports_a_change(remote: SimulatorProcess) -> None:
    fetches: list[float] = []
    fetch = remote.mirror._fetch

    def counted(*args: object) -> dict:
        fetches.append(time.monotonic())
        return fetch(*args)  # type: ignore[arg-type]

    remote.mirror._fetch = counted  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        remote.wait_for(lambda: remote.gateway_requests, timeout_s=2.5)
    assert len(fetches) <= 5  # one long poll per second at most, not a busy loop
    fetches.clear()
    threading.Thread(target=post, args=(remote, "/api/auth/login", {}), daemon=True).start()
    (request,) = remote.wait_for(lambda: remote.gateway_requests, timeout_s=10)
    assert request.status == 422 and len(fetches) <= 4


def test_the_copy_is_bounded_like_the_original() -> None:
    with SimulatorProcess(limits=Limits(max_audio_s=0.5)) as sim:
        g = grant(sim)
        peer = Peer(g["url"], g["auth"]["token"])
        ramp = (np.arange(24000) % 9000).astype(np.int16)
        peer.append(ramp)
        conn = sim.wait_for(lambda: sim.last_connection)
        sim.wait_for(lambda: conn.audio_chunks.chunks_total == 10)
        assert np.array_equal(conn.audio, ramp[-12000:])
        assert conn.audio_dropped_samples == 12000
        peer.close()


def test_tls_in_the_child(tmp_path: Path) -> None:
    ca = PrivateCA(tmp_path)
    with SimulatorProcess(tls=ca.server_files) as sim:
        assert sim.gateway_url.startswith("https://") and sim.realtime_url.startswith("wss://")


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A test process killed outright (SIGKILL: no cleanup runs) leaves no simulator."""
    script = ("import sys\nfrom kiosk.sim.remote import SimulatorProcess\n"
              "sim = SimulatorProcess().start()\n"
              "print(sim.pid, flush=True)\nsys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not gone(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_gone(child, 10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)

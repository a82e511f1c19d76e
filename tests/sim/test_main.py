"""`python -m kiosk.sim` as a container test starts it: fixed address and ports, the key in
a private file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.sim.conftest import post


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Printed:
    """What post() needs of a simulator: where its gateway is."""

    def __init__(self, gateway_url: str) -> None:
        self.gateway_url = gateway_url


def test_fixed_ports_and_a_key_file(tmp_path: Path) -> None:
    gateway_port, realtime_port = free_port(), free_port()
    key_file = tmp_path / "gateway-api-key"
    key_file.write_text("an old key\n")
    key_file.chmod(0o644)  # rewritten private, even when it existed
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk.sim", "--host", "127.0.0.1", "--gateway-port",
         str(gateway_port), "--realtime-port", str(realtime_port), "--api-key-file",
         str(key_file)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        printed = dict(proc.stdout.readline().split(None, 1) for _ in range(3))
        assert printed["gateway:"].strip() == f"http://127.0.0.1:{gateway_port}"
        assert printed["realtime:"].strip() == f"ws://127.0.0.1:{realtime_port}/v1/realtime"
        key = key_file.read_text().strip()
        assert key.startswith("va_k_") and printed["api"].split()[-1] == key
        assert key_file.stat().st_mode & 0o777 == 0o600
        status, body, _ = post(Printed(printed["gateway:"].strip()),  # type: ignore[arg-type]
                               "/api/voice/realtime-session", {}, {"X-API-Key": key})
        assert status == 200 and body["url"].endswith(f":{realtime_port}/v1/realtime")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0

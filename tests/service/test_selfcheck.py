"""Self-check against real sockets: a listening gateway port, a closed one, the clock."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest

from kiosk.service.selfcheck import run_selfcheck
from kiosk.settings import GatewaySettings, Settings


def devices_ok() -> tuple[bool, str]:
    return True, "microphone 'USB Audio' and speaker 'USB Audio' open"


@pytest.fixture
def gateway_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_gateway(url: str) -> Settings:
    return replace(Settings(), gateway=GatewaySettings(url=url))


def test_all_good(gateway_port):
    result = run_selfcheck(with_gateway(f"http://127.0.0.1:{gateway_port}"), devices_ok)
    assert result.ok and result.summary == "self-check ok"
    assert [line.split()[0] for line in result.lines] == ["ok", "ok", "ok"]
    assert f"127.0.0.1:{gateway_port} reachable" in result.lines[1]


def test_no_gateway_url_fails_and_says_what_to_set():
    result = run_selfcheck(Settings(), devices_ok)
    assert not result.ok and result.summary == "self-check failed: gateway"
    assert result.lines[1].startswith("FAIL gateway: gateway.url is empty")


def test_simulator_only_when_asked_for():
    result = run_selfcheck(with_gateway("simulator"), devices_ok)
    assert result.ok and "built-in simulator" in result.lines[1]


def test_gpio_problem_is_its_own_line():
    result = run_selfcheck(with_gateway("simulator"), devices_ok,
                           gpio_ok=lambda: (False, "no GPIO chip"))
    assert not result.ok and result.summary == "self-check failed: gpio"
    assert "FAIL gpio: no GPIO chip" in result.lines


def test_unreachable_gateway_fails():
    result = run_selfcheck(with_gateway(f"https://127.0.0.1:{closed_port()}/api"), devices_ok,
                           timeout_s=1.0)
    assert not result.ok
    assert result.summary == "self-check failed: gateway"
    assert result.lines[1].startswith("FAIL gateway: 127.0.0.1:")


def test_credentials_in_the_url_are_not_repeated():
    result = run_selfcheck(with_gateway(f"https://kiosk:s3cret@127.0.0.1:{closed_port()}"),
                           devices_ok, timeout_s=1.0)
    assert "s3cret" not in " ".join(result.lines)


def test_clock_in_the_past_fails():
    result = run_selfcheck(with_gateway("simulator"), devices_ok,
                           now=lambda: 0.0)  # 1970: no NTP yet
    assert not result.ok and result.summary == "self-check failed: clock"
    assert result.lines[2].startswith("FAIL clock: 1970-01-01")


def test_device_problems_are_reported_not_raised():
    def no_microphone() -> tuple[bool, str]:
        raise OSError("No Default Input Device Available")

    result = run_selfcheck(with_gateway("simulator"), no_microphone)
    assert not result.ok and result.summary == "self-check failed: devices"
    assert "No Default Input Device Available" in result.lines[0]

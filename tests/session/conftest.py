"""Fixtures: a running simulator, credential files for it, settings pointing at it, the fake
audio port and the event recorder, and a conversation wired to all of them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kiosk.conversation import Conversation
from kiosk.session.gateway import GatewayClient
from kiosk.settings import (
    AudioSettings,
    GatewaySettings,
    LoggingSettings,
    RealtimeSettings,
    Settings,
)
from kiosk.sim import Simulator
from tests.session.fakes import FakeAudio, Posted


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as s:
        yield s


@pytest.fixture
def key_file(sim: Simulator, tmp_path: Path) -> Path:
    path = tmp_path / "gateway-api-key"
    path.write_text(sim.api_key + "\n")
    path.chmod(0o600)
    return path


def make_settings(sim: Simulator, key_file: Path, *, gateway: dict[str, Any] | None = None,
                  realtime: dict[str, Any] | None = None, audio: dict[str, Any] | None = None,
                  transcripts: bool = False) -> Settings:
    """Settings for the simulator, with fast retries and a short give-up time so failure
    tests stay short."""
    g = GatewaySettings(url=sim.gateway_url, api_key_file=str(key_file), timeout_s=3.0,
                        retry_initial_s=0.05, retry_max_s=0.3, auth_retry_s=10.0,
                        give_up_s=1.0)
    r = RealtimeSettings(connect_timeout_s=5.0, reconnect_give_up_s=5.0)
    a = AudioSettings(echo_mode="none")
    return Settings(gateway=replace(g, **(gateway or {})),
                    realtime=replace(r, **(realtime or {})),
                    audio=replace(a, **(audio or {})),
                    logging=LoggingSettings(transcripts=transcripts))


@pytest.fixture
def settings(sim: Simulator, key_file: Path) -> Settings:
    return make_settings(sim, key_file)


@pytest.fixture
def audio() -> Iterator[FakeAudio]:
    a = FakeAudio(playback_speed=3.0)  # answers 'play' 3x faster than real time
    yield a
    a.close()


@pytest.fixture
def posted() -> Posted:
    return Posted()


Factory = Callable[..., Conversation]


@pytest.fixture
def conversation(sim: Simulator, key_file: Path, audio: FakeAudio,
                 posted: Posted) -> Iterator[Factory]:
    """conversation(**settings overrides) -> a Conversation on the fakes; ended after
    the test."""
    made: list[Conversation] = []

    def factory(gateway_clock: Callable[[], float] | None = None,
                **overrides: Any) -> Conversation:
        settings = make_settings(sim, key_file, **overrides)
        gateway = None
        if gateway_clock is not None:
            gateway = GatewayClient(settings.gateway, settings.realtime, clock=gateway_clock)
        conv = Conversation(settings, audio, posted, gateway)
        made.append(conv)
        return conv

    yield factory
    for conv in made:
        conv.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog

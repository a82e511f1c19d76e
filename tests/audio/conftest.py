"""Fixtures for the audio tests: one private PulseAudio rig for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kiosk.audio.virtual import VirtualAudio


@pytest.fixture(scope="session")
def rig_daemon() -> Iterator[VirtualAudio]:
    """The virtual sound rig's daemon, started once (it takes ~0.1 s, but why repeat it)."""
    audio = VirtualAudio().start()
    try:
        yield audio
    finally:
        audio.stop()


@pytest.fixture(scope="module")
def rig(rig_daemon: VirtualAudio) -> Iterator[VirtualAudio]:
    """The rig (devices kiosk_mic, kiosk_speaker) applied to this process for one module.

    The environment is restored after the module, so test folders that run later (and the
    daemons they start) never see this rig by accident.
    """
    saved = dict(os.environ)
    rig_daemon.apply_to_process()
    try:
        yield rig_daemon
    finally:
        os.environ.clear()
        os.environ.update(saved)

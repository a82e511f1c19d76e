"""Fixtures for the audio tests: one private PulseAudio rig for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kiosk.audio.virtual import VirtualAudio


@pytest.fixture(scope="session")
def rig() -> Iterator[VirtualAudio]:
    """The virtual sound rig (kiosk_mic, kiosk_speaker), applied to this process.

    The process environment is restored afterwards so other test folders see their own.
    """
    saved = dict(os.environ)
    audio = VirtualAudio().start()
    audio.apply_to_process()
    try:
        yield audio
    finally:
        audio.stop()
        os.environ.clear()
        os.environ.update(saved)

"""The audio classes offer every member of the shared port protocols."""

from __future__ import annotations

import pytest

from kiosk.audio.capture import Capture
from kiosk.audio.engine import AudioEngine
from kiosk.audio.playback import Playback
from kiosk.ports import AudioPort, CapturePort, PlaybackPort


def protocol_members(proto: type) -> set[str]:
    return {n for n in vars(proto) if not n.startswith("_")} | \
        set(getattr(proto, "__annotations__", {}))


@pytest.mark.parametrize(("cls", "proto"), [(Capture, CapturePort), (Playback, PlaybackPort),
                                            (AudioEngine, AudioPort)])
def test_class_has_every_protocol_member(cls, proto):
    members = protocol_members(proto)
    assert members, proto
    if cls is AudioEngine:  # capture and playback are set in __init__
        assert {"capture", "playback"} <= members
        members -= {"capture", "playback"}
    missing = [m for m in members if not hasattr(cls, m)]
    assert not missing, f"{cls.__name__} lacks {missing}"

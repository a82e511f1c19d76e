"""The night window in local time: inside, outside, across midnight, and when it next changes;
what the profile applies to its targets as a controllable clock moves."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from kiosk.night import NightProfile, is_night, parse_time, seconds_to_next_change
from kiosk.settings import AudioSettings, NightSettings


@pytest.mark.parametrize(("now", "night"), [
    ("21:59", False), ("22:00", True), ("23:59", True), ("00:00", True), ("03:30", True),
    ("06:59", True), ("07:00", False), ("12:00", False)])
def test_a_window_across_midnight(now: str, night: bool) -> None:
    assert is_night(parse_time(now), time(22, 0), time(7, 0)) is night


@pytest.mark.parametrize(("now", "night"), [
    ("00:59", False), ("01:00", True), ("04:59", True), ("05:00", False), ("23:00", False)])
def test_a_window_within_one_day(now: str, night: bool) -> None:
    assert is_night(parse_time(now), time(1, 0), time(5, 0)) is night


@pytest.mark.parametrize(("now", "seconds"), [
    (datetime(2026, 3, 1, 21, 0), 3600.0),  # to the start
    (datetime(2026, 3, 1, 23, 0), 8 * 3600.0),  # across midnight to the end
    (datetime(2026, 3, 2, 7, 0), 15 * 3600.0),  # exactly at the end: to the next start
    (datetime(2026, 12, 31, 23, 30), 7.5 * 3600),  # across a year
])
def test_seconds_to_the_next_change(now: datetime, seconds: float) -> None:
    assert seconds_to_next_change(now, time(22, 0), time(7, 0)) == seconds


class Target:
    def __init__(self) -> None:
        self.volumes: list[int] = []
        self.nights: list[float | None] = []

    def set_volume(self, percent: int) -> None:
        self.volumes.append(percent)

    def set_night(self, brightness: float | None) -> None:
        self.nights.append(brightness)


def test_the_profile_caps_volumes_and_dims_the_light_as_the_clock_moves() -> None:
    clock = [datetime(2026, 3, 1, 21, 59)]
    answers, cues, light = Target(), Target(), Target()
    profile = NightProfile(NightSettings(start="22:00", end="07:00", volume=40, cue_volume=20,
                                         led_brightness=0.1),
                           AudioSettings(volume=80, cue_volume=60), answers, cues, light,
                           now=lambda: clock[0])
    assert profile.refresh() is False
    clock[0] = datetime(2026, 3, 1, 22, 0)
    assert profile.refresh() is True
    clock[0] = datetime(2026, 3, 2, 0, 30)  # after midnight: still night, nothing re-applied
    assert profile.refresh() is True
    clock[0] = datetime(2026, 3, 2, 7, 0)
    assert profile.refresh() is False
    assert answers.volumes == [80, 40, 80]
    assert cues.volumes == [60, 20, 60]
    assert light.nights == [None, 0.1, None]


def test_a_quiet_day_volume_is_not_raised_at_night() -> None:
    answers, cues = Target(), Target()
    profile = NightProfile(NightSettings(start="22:00", end="07:00", volume=40, cue_volume=20),
                           AudioSettings(volume=30, cue_volume=10), answers, cues,
                           now=lambda: datetime(2026, 3, 1, 23, 0))
    profile.refresh()
    assert answers.volumes == [30] and cues.volumes == [10]

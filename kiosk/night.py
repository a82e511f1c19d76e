"""The night profile: between `night.start` and `night.end` (local time), answers and cues are
quieter and the light is dimmer, with the idle light off.

    profile = NightProfile(settings.night, settings.audio, playback, cues, light)
    profile.start()        # applies day or night now, then follows the clock
    profile.close()

The window may cross midnight (22:00 to 07:00 is the usual case): a time is inside when it
is at or after `start` and before `end` on a same-day window, or at/after `start` *or* before
`end` on one that crosses midnight.

The answer volume changes only between answers: the playback keeps the volume an answer item
began with (`Playback.set_volume`), so the switch at 22:00 in the middle of a sentence does not
jump; the next answer is quieter. Cues take the new volume from the next cue, the light at
once. The profile is checked at every state change of the controller and by a thread of its
own at the next start or end (waking at least once a minute, so a clock set by NTP after
boot, or a change of summer time, is followed within a minute).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import Protocol

from kiosk.settings import AudioSettings, NightSettings
from kiosk.states import StateChange

log = logging.getLogger("kiosk.night")

MAX_WAIT_S = 60.0  # longest sleep of the profile's thread (see the module's docstring)


class VolumeTarget(Protocol):
    def set_volume(self, percent: int) -> None: ...


class NightLight(Protocol):
    def set_night(self, brightness: float | None) -> None: ...


def parse_time(text: str) -> clock_time:
    """"22:00" -> datetime.time(22, 0) (the settings hold checked HH:MM)."""
    hours, _, minutes = text.partition(":")
    return clock_time(int(hours), int(minutes))


def is_night(now: clock_time, start: clock_time, end: clock_time) -> bool:
    """Whether `now` is inside [start, end), a window that may cross midnight."""
    if start < end:
        return start <= now < end
    return now >= start or now < end


def seconds_to_next_change(now: datetime, start: clock_time, end: clock_time) -> float:
    """Seconds from `now` to the next start or end of the night."""
    candidates = [datetime.combine(now.date() + timedelta(days=d), t)
                  for d in (0, 1) for t in (start, end)]
    return min((c - now).total_seconds() for c in candidates if c > now)


class NightProfile:
    """Applies day or night to the answer volume, the cue volume and the light.

    :param night: the `night` settings (`start` and `end` set).
    :param audio: the `audio` settings: `volume` and `cue_volume` by day, capped at night.
    :param playback, cues: what takes the answer and the cue volume (`set_volume`).
    :param light: the status light (`set_night`), or None without one.
    :param now: the local time of day (tests give a clock they move).
    """

    def __init__(self, night: NightSettings, audio: AudioSettings, playback: VolumeTarget,
                 cues: VolumeTarget, light: NightLight | None = None,
                 now: Callable[[], datetime] = datetime.now) -> None:
        if night.start is None or night.end is None:
            raise ValueError("night.start and night.end must both be set")
        self.settings = night
        self.audio = audio
        self._start, self._end = parse_time(night.start), parse_time(night.end)
        self._playback, self._cues, self._light = playback, cues, light
        self._now = now
        self._lock = threading.Lock()  # refresh() from the controller and from the thread
        self.night: bool | None = None  # None until first applied
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def answer_volume(self) -> int:
        """The answer volume that applies now."""
        if self.night:
            return min(self.audio.volume, self.settings.volume)
        return self.audio.volume

    @property
    def cue_volume(self) -> int:
        if self.night:
            return min(self.audio.cue_volume, self.settings.cue_volume)
        return self.audio.cue_volume

    def refresh(self) -> bool:
        """Check the clock and apply day or night if it changed; returns whether it is night.
        Never blocks on I/O (the targets only take the new values)."""
        night = is_night(self._now().time(), self._start, self._end)
        with self._lock:
            if night == self.night:
                return night
            self.night = night
            self._playback.set_volume(self.answer_volume)
            self._cues.set_volume(self.cue_volume)
            if self._light is not None:
                self._light.set_night(self.settings.led_brightness if night else None)
        if night:
            log.info("night profile: night until %s (answers at %d %%, cues at %d %%, light "
                     "at %g, idle light off)", self.settings.end, self.answer_volume,
                     self.cue_volume, self.settings.led_brightness)
        else:
            log.info("night profile: day until %s (answers at %d %%, cues at %d %%)",
                     self.settings.start, self.answer_volume, self.cue_volume)
        return night

    def on_state_change(self, change: StateChange) -> None:
        """Controller observer: a press at 22:00:01 gets the night at once."""
        self.refresh()

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="night-profile", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                wait_s = seconds_to_next_change(self._now(), self._start, self._end)
            except Exception:  # noqa: BLE001 - a clock that cannot be read: try again later
                log.exception("night profile: cannot read the clock")
                wait_s = MAX_WAIT_S
            if self._stop.wait(min(MAX_WAIT_S, wait_s + 0.05)):
                return
            try:
                self.refresh()
            except Exception:  # the profile must survive a broken target
                log.exception("night profile: could not apply the profile")

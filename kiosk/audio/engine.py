"""AudioEngine: owns PortAudio, the microphone, the speaker and the cues, and keeps them up.

`start()` checks that both devices open. If one is missing, the engine reports
``("lost", message)`` to its listener -- the message names the device and lists the ones that
exist -- and a supervisor thread retries every ``device_retry_s``, re-initialising PortAudio
each time (PortAudio only scans for devices when it starts, so this is how a replugged USB
device is found). When both devices open again it reports ``("ready", message)``.

A stream runs only while something needs it: the microphone while a visit keeps it armed
(with the echo gate, not while seconds of an answer are still queued: all it hears then is
dropped), the speaker while it has something to play (an answer, a cue, the device's tail).
With the echo canceller both run all the time (see `_streams_kept_open`).
Otherwise, idle, both are closed and PortAudio itself is shut down (its device probing maps
~19 MiB of ALSA plugins and keeps its threads); the supervisor sleeps until capture.arm() or
anything to play wakes it, then reopens what is needed: about 1-5 ms for the speaker and
40 ms to the first microphone callback through PulseAudio, plus PortAudio's start (40 ms
here).
Stopped-but-open streams were tried first: restarting one whose device had vanished hung
inside PortAudio; reopening fails cleanly instead. `audio.stop_when_idle: false` keeps both
running all the time (for a USB speaker that clicks when its stream starts).

While a stream runs the supervisor watches it: when PortAudio ends it, or its callbacks stop
arriving (an unplugged device, a stalled sound server), it reports ``"lost"``, closes
everything and goes back to retrying. Failures cannot hide: an exception inside an audio
callback (which PortAudio would swallow) is logged once with its traceback and counted
(`callback_errors`, exported as a metric); when callbacks keep failing the streams are lost
and reopened. The supervisor survives any exception of its own, and `alive()` checks that it
runs. `capture`, `playback` and `cues` stay the same objects throughout.

Example::

    engine = AudioEngine(settings.audio, listener=lambda kind, msg: post(kind, msg))
    engine.start()
    ...
    engine.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pyaudio

from kiosk.audio.capture import Capture
from kiosk.audio.cues import CuePlayer
from kiosk.audio.devices import AudioDeviceError, Direction, find_device, open_portaudio
from kiosk.audio.echo import EchoControl
from kiosk.audio.playback import Playback
from kiosk.settings import AudioSettings

log = logging.getLogger(__name__)

EngineListener = Callable[[str, str], None]

# The echo gate's microphone rest during an answer (see AudioEngine._mic_wanted). It closes
# after `idle_grace_s` with at least this much answer still queued (so it rests >= 2 s; a
# reopening costs more than a second of running), and reopens with this much left: the
# supervisor looks every 0.25 s and a reopening takes ~40 ms here, a few times that on a Pi.
MIC_REST_AHEAD_S = 3.0
MIC_WAKE_AHEAD_S = 1.0


class AudioEngine:
    """The kiosk's audio: implements `kiosk.ports.AudioPort`.

    `listener(kind, message)` receives ``"lost"`` and ``"ready"``; it is called from the
    engine's threads and must not block (post to the controller and return).
    """

    def __init__(self, settings: AudioSettings, listener: EngineListener | None = None,
                 at_rest: Callable[[], object] | None = None) -> None:
        self.settings = settings
        # Called on the supervisor's thread once both streams are closed and PortAudio is
        # shut down (the daemon gives freed memory back to the system there).
        self._at_rest = at_rest
        self.capture = Capture(settings)
        self.playback = Playback(settings)
        self.cues = CuePlayer(self.playback, settings)
        # Keeps the kiosk's own voice out of what the service hears (kiosk/audio/echo.py).
        self.echo = EchoControl(settings, lambda: self.playback.busy)
        if self.echo.effective != "none":
            self.capture.set_gate_source(self.echo.gate_closed)
        if self.echo.wants_reference:
            self.playback.set_reference(self.echo.reference)
            self.capture.set_echo(self.echo)
        self._listener = listener
        self._need = threading.Event()  # something needs a stream (or stop())
        self.capture.set_wake(self._need.set)
        self.playback.set_wake(self._need.set)
        self._pa: pyaudio.PyAudio | None = None
        self._lock = threading.Lock()  # open/close of devices
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = False
        self._lost_reported = False
        self._next_retry = 0.0
        self._idle_since: dict[str, float | None] = {"microphone": None, "speaker": None}
        self.last_error: str | None = None
        self.missing: tuple[str, ...] = ()
        """The parts that do not work while not ready: "microphone", "speaker" or both."""
        self.callback_errors = 0
        """Audio callbacks that raised, both directions, since start (for the metrics)."""
        self._errors_seen = (0, 0)  # capture, playback callback errors already accounted
        self._failing_polls = 0
        self.pauses = 0
        """Times a stream was closed because nothing needed it."""
        # A callback gap longer than this means the device stopped delivering. Generous:
        # on a busy 2-core machine, sound servers and callbacks can lag by half a second,
        # and a false "lost" would show the patient an error.
        self.stall_s = 2.0
        # Unneeded this long before a stream is closed: the gap between the end chime and a
        # quick second press, or between two answers, costs no reopening.
        self.idle_grace_s = 1.0

    # -- AudioPort -----------------------------------------------------------------------

    def alive(self) -> bool:
        """The supervisor runs and the devices are present; every open stream runs and its
        callbacks were seen within `stall_s` (a closed stream is simply not needed now)."""
        if not (self.supervisor_alive() and self._ready):
            return False
        now = time.monotonic()
        for port in (self.capture, self.playback):
            if port.is_open and (not port.stream_active()
                                 or now - port.last_callback_at >= self.stall_s):
                return False
        return True

    @property
    def paused(self) -> bool:
        """True while no stream is open because nothing needs one (the kiosk is idle)."""
        return self._ready and not self.capture.is_open and not self.playback.is_open

    def supervisor_alive(self) -> bool:
        """The thread that watches and reopens the devices is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def ready(self) -> bool:
        """True while both devices are present (False while waiting for one to return)."""
        return self._ready

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> bool:
        """Check both devices now; True on success. Keeps retrying in the background if not."""
        ok = self._try_open()
        if not ok:
            self._report_lost(self.last_error or "audio devices unavailable")
        self._next_retry = time.monotonic() + self.settings.device_retry_s
        self._thread = threading.Thread(target=self._supervise, name="audio-supervisor",
                                        daemon=True)
        self._thread.start()
        return ok

    def stop(self) -> None:
        """Close the streams, stop the cue ticker and every engine thread."""
        self._stop.set()
        self._need.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.cues.close()
        if self._lock.acquire(timeout=2.0):  # not forever: a device call may hang in the OS
            try:
                self._close_all()
            finally:
                self._lock.release()
        else:
            log.error("audio: the devices did not close (a sound-system call hangs)")
        self.playback.shutdown()

    # -- the supervisor ------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                wait_s = self._supervise_once()
            except Exception as exc:  # the watcher must outlive any bug: restart the streams
                log.exception("audio supervisor: unexpected error; restarting the audio")
                self._lose(f"audio supervisor error ({type(exc).__name__}: {exc}); restarting "
                           "the audio")
                wait_s = self.settings.device_retry_s
            # Asleep while nothing runs (None: until something needs sound); polling only
            # while a stream runs or a device is missing.
            self._need.wait(wait_s)
            self._need.clear()

    def _supervise_once(self) -> float | None:
        """One look at the devices; returns how long to sleep (None: until woken)."""
        poll_s = min(0.25, self.stall_s / 4)
        now = time.monotonic()
        if not self._ready:
            if now < self._next_retry:
                return self._next_retry - now
            if self._try_open():
                self._lost_reported = False
                self._notify("ready", self._describe())
            self._next_retry = time.monotonic() + self.settings.device_retry_s
            return poll_s if self._ready else self.settings.device_retry_s
        problem = self._callback_problem() or self._health_problem()
        if problem:
            self._lose(problem)
            return self.settings.device_retry_s
        try:
            kept_open = self._streams_kept_open()
            for what, port, wanted in (("speaker", self.playback, self.playback.busy),
                                       ("microphone", self.capture, self._mic_wanted())):
                self._follow(what, port, wanted or kept_open, now)
        except AudioDeviceError as exc:
            self._lose(f"{exc} Retrying every {self.settings.device_retry_s:g} s.")
            return self.settings.device_retry_s
        if not self.capture.is_open and not self.playback.is_open:
            self._release_portaudio()
            return None
        return poll_s

    def _streams_kept_open(self) -> bool:
        """Both streams run from start to stop, wanted or not: with `audio.stop_when_idle:
        false` (a USB speaker that clicks when its stream starts), and with the echo
        canceller (nothing the microphone hears is kept while no visit is armed).

        Why the canceller: every new stream moves the echo a little (through PulseAudio,
        measured on the echo rig: up to 17 ms from one output stream to the next while each
        stream was anchored on PortAudio's early first stamps; with the stamps placed by
        `StreamTimeline`, within about 1.5 ms, and now and then more), and AEC3 follows a
        moved echo only after a burst of it has leaked, which the service takes for the
        patient. bench/echo.py, each answer on a new visit from rest: both streams per
        visit, 17 of 17 phrases stopped the answer within 500 ms but 3 of 20 answers cut
        themselves short; the speaker's stream open and a capture stream per visit, 0 to 4
        of 40 answers cut short in seven runs; both streams open, 0 of 40 in each of three
        runs. The price, measured at idle: 0.019-0.026 CPU-s per second and 520-543
        wake-ups per second (the README says so)."""
        return not self.settings.stop_when_idle or self.echo.effective == "aec"

    def _mic_wanted(self) -> bool:
        """A visit keeps the microphone armed; with the echo gate, whatever it hears while
        an answer plays is dropped anyway, so it rests while seconds of answer are still
        queued (the service sends them faster than they play) and opens again with a second
        left, so it runs before the gate opens: a patient loses no word after the answer."""
        if not self.capture.armed:
            return False
        if self.echo.effective != "gate":
            return True  # aec and none: the patient may interrupt by voice
        ahead = self.playback.ahead_s
        return ahead < (MIC_REST_AHEAD_S if self.capture.is_open else MIC_WAKE_AHEAD_S)

    def _follow(self, what: str, port: Capture | Playback, wanted: bool, now: float) -> None:
        """Open a stream that is needed (the speaker first: a chime waits for it), close one
        that has not been needed for `idle_grace_s`."""
        if wanted:
            self._idle_since[what] = None
            if not port.is_open:
                with self._lock:
                    pa = self._portaudio()
                    setting = (self.settings.output_device if what == "speaker"
                               else self.settings.input_device)
                    port.resume(pa, find_device(pa, setting,
                                                "output" if what == "speaker" else "input"))
                log.debug("audio: %s stream opened", what)
        elif port.is_open:
            since = self._idle_since[what]
            if since is None:
                self._idle_since[what] = now
            elif now - since >= self.idle_grace_s:
                with self._lock:
                    port.pause()
                self._idle_since[what] = None
                self.pauses += 1
                log.debug("audio: %s not needed, stream closed", what)

    def _portaudio(self) -> pyaudio.PyAudio:
        if self._pa is None:
            self._pa = open_portaudio()
        return self._pa

    def _release_portaudio(self) -> None:
        """Both streams are closed: shut PortAudio down too (memory, threads)."""
        with self._lock:
            if self._pa is None or self.capture.is_open or self.playback.is_open:
                return
            pa, self._pa = self._pa, None
            pa.terminate()
        if self._at_rest is not None:
            self._at_rest()

    def _lose(self, problem: str) -> None:
        with self._lock:
            self._close_all()
        self._report_lost(problem)
        self._next_retry = time.monotonic() + self.settings.device_retry_s

    def _callback_problem(self) -> str | None:
        """Account exceptions raised inside the callbacks since the last poll: the first one
        ever is logged with its traceback; failing in three polls in a row loses the streams."""
        seen_c, seen_p = self._errors_seen
        now_c, now_p = self.capture.callback_errors, self.playback.callback_errors
        new = (now_c - seen_c) + (now_p - seen_p)
        self._errors_seen = (now_c, now_p)
        if new <= 0:
            self._failing_polls = 0
            return None
        first = self.callback_errors == 0
        self.callback_errors += new
        self._failing_polls += 1
        which = "microphone" if now_c > seen_c else "speaker"
        port = self.capture if which == "microphone" else self.playback
        exc = port.last_callback_error
        if first:
            log.error("audio: the %s callback raised %s (that block was lost)", which,
                      type(exc).__name__, exc_info=exc, extra={"error_kind": "device"})
        if self._failing_polls >= 3:
            self._failing_polls = 0
            self.missing = (which,)
            return (f"the {which} callback keeps failing ({type(exc).__name__}: {exc}); "
                    f"reopening the audio devices every {self.settings.device_retry_s:g} s")
        return None

    def _health_problem(self) -> str | None:
        now = time.monotonic()
        for what, port, setting in (("microphone", self.capture, self.settings.input_device),
                                    ("speaker", self.playback, self.settings.output_device)):
            if not port.is_open:
                continue
            name = port.device_name or setting
            if not port.stream_active():
                self.missing = (what,)
                return (f"{what} {name!r} stopped (PortAudio ended the stream): unplugged? "
                        f"Retrying every {self.settings.device_retry_s:g} s.")
            gap = now - port.last_callback_at
            if gap > self.stall_s:
                self.missing = (what,)
                return (f"{what} {name!r} stopped delivering audio ({gap:.1f} s without a "
                        f"callback): unplugged or the sound server stalled? Retrying every "
                        f"{self.settings.device_retry_s:g} s.")
        return None

    def _try_open(self) -> bool:
        """Find and open both devices (PortAudio rescans them now); they close again by
        themselves once nothing needs them."""
        with self._lock:
            self._close_all()
            self._pa = open_portaudio()
            problems: list[tuple[str, AudioDeviceError]] = []
            direction: Direction
            port: Capture | Playback
            for what, port, setting, direction in (
                    ("microphone", self.capture, self.settings.input_device, "input"),
                    ("speaker", self.playback, self.settings.output_device, "output")):
                try:  # both, so IT staff learn of two missing devices at once
                    port.open(self._pa, find_device(self._pa, setting, direction))
                except AudioDeviceError as exc:
                    problems.append((what, exc))
            if problems:
                self.missing = tuple(what for what, _ in problems)
                self.last_error = " ".join(str(exc) for _, exc in problems)
                self._close_all()
                return False
            self.missing = ()
            self._ready = True
            self._idle_since = {"microphone": None, "speaker": None}
            self.last_error = None
        log.info("audio ready: %s", self._describe())
        return True

    def _close_all(self) -> None:
        self._ready = False
        self.capture.close()
        self.playback.close()
        if self._pa is not None:
            pa, self._pa = self._pa, None
            pa.terminate()

    def _describe(self) -> str:
        c, p = self.capture, self.playback
        return (f"microphone {c.device_name!r} at {c.device_rate_hz} Hz x{c.channels}, "
                f"speaker {p.device_name!r} at {p.device_rate_hz} Hz x{p.channels}")

    def _report_lost(self, message: str) -> None:
        if not self._lost_reported:  # one report per outage, not one per retry
            log.error("audio device problem: %s", message)
            self._lost_reported = True
            self._notify("lost", message)

    def _notify(self, kind: str, message: str) -> None:
        if self._listener is None:
            return
        try:
            self._listener(kind, message)
        except Exception:
            log.exception("audio engine listener failed on %s", kind)

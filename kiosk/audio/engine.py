"""AudioEngine: owns PortAudio, the microphone, the speaker and the cues, and keeps them up.

`start()` opens both devices at once. If one is missing, the engine reports
``("lost", message)`` to its listener -- the message names the device and lists the ones that
exist -- and a supervisor thread retries every ``device_retry_s``, re-initialising PortAudio
each time (PortAudio only scans for devices when it starts, so this is how a replugged USB
device is found). When both devices open again it reports ``("ready", message)``.

The same supervisor watches running streams: when PortAudio stops a stream, or its callbacks
stop arriving (an unplugged device, a stalled sound server), it reports ``"lost"``, closes
everything and goes back to retrying. `capture`, `playback` and `cues` stay the same objects
throughout, so the conversation never needs new references.

Idle costs nothing: when no visit keeps the microphone armed and nothing plays, the engine
*pauses*: it closes both streams (PortAudio's callbacks and the sound server's client threads
stop; device, format and buffers are kept) and its supervisor sleeps until something needs
sound. A press (the chime, the armed microphone) reopens them within milliseconds. (Stopped
but open streams would be cheaper to restart, but a stopped stream whose device vanished can
hang the restart forever; reopening fails cleanly instead.) `audio.stop_when_idle: false`
keeps them running (for a USB speaker that clicks when its stream starts).

Failures cannot hide: an exception inside an audio callback (which PortAudio would swallow)
is logged once with its traceback and counted (`callback_errors`, exported as a metric); when
callbacks keep failing the streams are treated as lost and reopened. The supervisor itself
survives any exception (logged, streams restarted), and `alive()` checks that it runs, so the
systemd watchdog restarts a kiosk whose audio is truly stuck.

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
from kiosk.audio.playback import Playback
from kiosk.settings import AudioSettings

log = logging.getLogger(__name__)

EngineListener = Callable[[str, str], None]


class AudioEngine:
    """The kiosk's audio: implements `kiosk.ports.AudioPort`.

    `listener(kind, message)` receives ``"lost"`` and ``"ready"``; it is called from the
    engine's threads and must not block (post to the controller and return).
    """

    def __init__(self, settings: AudioSettings,
                 listener: EngineListener | None = None) -> None:
        self.settings = settings
        self.capture = Capture(settings)
        self.playback = Playback(settings)
        self.cues = CuePlayer(self.playback, settings)
        if settings.echo_mode == "gate":
            # The mic is not kept while the speaker plays (answer or cue), so neither the answer
            # nor a cue can echo back to the server; the button still interrupts.
            self.capture.set_gate_source(lambda: self.playback.busy)
        self._listener = listener
        self._need = threading.Event()  # something needs running streams (or stop())
        self.capture.set_wake(self._need.set)
        self.playback.set_wake(self._need.set)
        self._paused = False
        self._idle_since: float | None = None
        self.pauses = 0
        """Times the streams were paused because the kiosk was idle."""
        self._pa: pyaudio.PyAudio | None = None
        self._lock = threading.Lock()  # open/close of devices
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = False
        self._lost_reported = False
        self.last_error: str | None = None
        self.missing: tuple[str, ...] = ()
        """The parts that do not work while not ready: "microphone", "speaker" or both."""
        self.callback_errors = 0
        """Audio callbacks that raised, both directions, since start (for the metrics)."""
        self._errors_seen = (0, 0)  # capture, playback callback errors already accounted
        self._failing_polls = 0
        # A callback gap longer than this means the device stopped delivering. Generous:
        # on a busy 2-core machine, sound servers and callbacks can lag by half a second,
        # and a false "lost" would show the patient an error.
        self.stall_s = 2.0
        # Idle this long (nothing armed, nothing playing) before the streams are paused: the
        # gap between the end chime and a quick second press costs no restart.
        self.idle_grace_s = 1.0

    # -- AudioPort -----------------------------------------------------------------------

    def alive(self) -> bool:
        """The supervisor runs and both devices are open; unless paused (idle), both streams
        run and their callbacks were seen within `stall_s`."""
        now = time.monotonic()
        if not (self.supervisor_alive() and self._ready):
            return False
        if self._paused:
            return True
        return (self.capture.stream_active() and self.playback.stream_active()
                and now - self.capture.last_callback_at < self.stall_s
                and now - self.playback.last_callback_at < self.stall_s)

    @property
    def paused(self) -> bool:
        """True while the streams are paused because the kiosk is idle."""
        return self._paused

    def _wanted(self) -> bool:
        """A visit keeps the microphone armed, or the speaker has something to play."""
        return self.capture.armed or self.playback.busy

    def supervisor_alive(self) -> bool:
        """The thread that watches and reopens the devices is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def ready(self) -> bool:
        """True while both devices are open (False while waiting for a device to return)."""
        return self._ready

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> bool:
        """Open both devices now; True on success. Keeps retrying in the background if not."""
        ok = self._try_open()
        if not ok:
            self._report_lost(self.last_error or "audio devices unavailable")
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

    # -- internals -----------------------------------------------------------------------

    def _supervise(self) -> None:
        self._next_retry = time.monotonic() + self.settings.device_retry_s
        while not self._stop.is_set():
            try:
                wait_s = self._supervise_once()
            except Exception as exc:  # the watcher must outlive any bug: restart the streams
                log.exception("audio supervisor: unexpected error; restarting the audio")
                self._lose(f"audio supervisor error ({type(exc).__name__}: {exc}); restarting "
                           "the audio")
                wait_s = self.settings.device_retry_s
            # Asleep while paused (None: until something needs sound); polling only while
            # the streams run or a device is missing.
            self._need.wait(wait_s)
            self._need.clear()

    def _supervise_once(self) -> float | None:
        """One look at the devices; returns how long to sleep (None: until woken)."""
        poll_s = min(0.25, self.stall_s / 4)
        now = time.monotonic()
        if not self._ready:
            if now >= self._next_retry:
                if self._try_open():
                    self._lost_reported = False
                    self._notify("ready", self._describe())
                self._next_retry = time.monotonic() + self.settings.device_retry_s
            return max(0.01, self._next_retry - time.monotonic()) if not self._ready else poll_s
        if self._paused:
            if not self._wanted():
                return None
            self._resume()
            return poll_s
        problem = self._callback_problem() or self._health_problem()
        if problem:
            self._lose(problem)
            return self.settings.device_retry_s
        if self._wanted() or not self.settings.stop_when_idle:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.idle_grace_s:
            self._pause()
            return None
        return poll_s

    def _pause(self) -> None:
        with self._lock:
            self.capture.pause()
            self.playback.pause()
            self._paused = True
            self.pauses += 1
        self._idle_since = None
        log.debug("audio: idle, streams paused")

    def _resume(self) -> None:
        try:
            with self._lock:
                self.playback.resume()  # first: the chime at a press is waiting for it
                self.capture.resume()
                self._paused = False
        except AudioDeviceError as exc:
            self._lose(f"{exc} Retrying every {self.settings.device_retry_s:g} s.")
            return
        log.debug("audio: streams resumed")

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
            return (f"the {which} callback keeps failing ({type(exc).__name__}: {exc}); "
                    f"reopening the audio devices every {self.settings.device_retry_s:g} s")
        return None

    def _health_problem(self) -> str | None:
        now = time.monotonic()
        for what, port, setting in (("microphone", self.capture, self.settings.input_device),
                                    ("speaker", self.playback, self.settings.output_device)):
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
            self._paused = False
            self._idle_since = None
            self.last_error = None
        log.info("audio ready: %s", self._describe())
        return True

    def _close_all(self) -> None:
        self._ready = False
        self._paused = False
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

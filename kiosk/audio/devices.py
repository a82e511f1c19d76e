"""PortAudio start-up and audio device choice.

Devices are chosen the way IT staff describe them: by a *name substring* such as
``"USB PnP"`` (stable when USB cards are renumbered after a reboot or a replug), by PortAudio
index (fragile: the list changes with what is plugged in and running), or ``"default"``.

`open_portaudio()` hides the ~70 lines of ALSA/JACK probing noise PortAudio prints to stderr
at start-up (and on every failed open), so the journal stays readable.

Example::

    pa = open_portaudio()
    mic = find_device(pa, "USB", "input")
    print(format_device_table(list_devices(pa)))
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyaudio

from kiosk.audio.thread_state import ThreadStatePin
from kiosk.ports import SAMPLE_RATE_HZ

Direction = Literal["input", "output"]

# Rates tried, in order, when the device cannot run at 24 kHz and its default rate fails too.
_FALLBACK_RATES = (48000, 44100, 32000, 16000, 96000)


class AudioDeviceError(RuntimeError):
    """A configured audio device is missing or unusable; the message tells IT what to do."""


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device as listed by `voice-kiosk devices`."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_rate_hz: int

    def channels(self, direction: Direction) -> int:
        return self.max_input_channels if direction == "input" else self.max_output_channels


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (PortAudio's C-level noise).

    The swap is process-wide, so it is serialised, and only wraps PortAudio calls that take
    milliseconds. The kiosk's log writes to a descriptor of its own (kiosk.service.logs), so
    no log line is lost in the window; a bare print() to stderr would be.
    """
    with _stderr_lock:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(devnull)
            os.close(saved)


def open_portaudio() -> pyaudio.PyAudio:
    """Initialise PortAudio quietly. Call `.terminate()` on the result when done.

    PortAudio scans devices only here: to see a USB device plugged in later, terminate every
    instance in the process and open a new one.
    """
    with quiet_stderr():
        return pyaudio.PyAudio()


def list_devices(pa: pyaudio.PyAudio | None = None) -> list[DeviceInfo]:
    """All devices PortAudio sees now (opens and closes PortAudio when `pa` is None)."""
    own = pa is None
    if pa is None:
        pa = open_portaudio()
    try:
        apis = {i: pa.get_host_api_info_by_index(i)["name"]
                for i in range(pa.get_host_api_count())}
        out = []
        for i in range(pa.get_device_count()):
            d = pa.get_device_info_by_index(i)
            out.append(DeviceInfo(index=i, name=str(d["name"]),
                                  host_api=str(apis.get(d["hostApi"], "?")),
                                  max_input_channels=int(d["maxInputChannels"]),
                                  max_output_channels=int(d["maxOutputChannels"]),
                                  default_rate_hz=int(d["defaultSampleRate"])))
        return out
    finally:
        if own:
            pa.terminate()


def format_device_table(devices: list[DeviceInfo]) -> str:
    """A fixed-width table for `voice-kiosk devices`: index, name, channels, default rate."""
    if not devices:
        return ("No audio devices found. Check that the USB microphone and speaker are plugged "
                "in (`arecord -l`, `aplay -l`) and that the kiosk user is in the 'audio' group.")
    width = max(len("name"), *(len(d.name) for d in devices))
    lines = [f"{'index':>5}  {'name':<{width}}  {'in':>3}  {'out':>3}  {'rate_hz':>7}  host_api"]
    for d in devices:
        lines.append(f"{d.index:>5}  {d.name:<{width}}  {d.max_input_channels:>3}  "
                     f"{d.max_output_channels:>3}  {d.default_rate_hz:>7}  {d.host_api}")
    return "\n".join(lines)


def describe_available(devices: list[DeviceInfo], direction: Direction) -> str:
    """One line naming the devices that exist for a direction (for error messages)."""
    usable = [d for d in devices if d.channels(direction) > 0]
    if not usable:
        return f"PortAudio lists no {direction} devices at all"
    return "available: " + ", ".join(f"{d.index}: {d.name!r}" for d in usable)


def find_device(pa: pyaudio.PyAudio, spec: str | int, direction: Direction) -> DeviceInfo:
    """Resolve a configured device (name substring, index or "default") to a `DeviceInfo`.

    An exact name match wins over a substring match; among substring matches the first one
    that has channels in the wanted direction is used. Raises `AudioDeviceError` naming the
    setting and listing the devices that do exist.
    """
    devices = list_devices(pa)
    setting = "audio.input_device" if direction == "input" else "audio.output_device"
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec.strip())
    if isinstance(spec, int):
        for d in devices:
            if d.index == spec and d.channels(direction) > 0:
                return d
        raise AudioDeviceError(
            f"{direction} device index {spec} ({setting}) does not exist or has no {direction} "
            f"channels; {describe_available(devices, direction)}. Prefer a name substring: "
            "indexes change when USB devices are replugged.")
    if spec.strip().lower() == "default":
        try:
            info = (pa.get_default_input_device_info() if direction == "input"
                    else pa.get_default_output_device_info())
        except OSError as exc:
            raise AudioDeviceError(
                f"no default {direction} device ({setting}=default): {exc}; "
                f"{describe_available(devices, direction)}. Set {setting} to one of these "
                "names.") from None
        return next(d for d in devices if d.index == int(info["index"]))
    wanted = spec.lower()
    candidates = [d for d in devices if d.channels(direction) > 0]
    for d in candidates:
        if d.name.lower() == wanted:
            return d
    for d in candidates:
        if wanted in d.name.lower():
            return d
    raise AudioDeviceError(
        f"{direction} device {spec!r} ({setting}) not found: is it plugged in? "
        f"{describe_available(devices, direction)}.")


def _supported(pa: pyaudio.PyAudio, dev: DeviceInfo, direction: Direction, rate: int,
               channels: int) -> bool:
    kwargs = ({"input_device": dev.index, "input_channels": channels,
               "input_format": pyaudio.paInt16} if direction == "input" else
              {"output_device": dev.index, "output_channels": channels,
               "output_format": pyaudio.paInt16})
    try:
        with quiet_stderr():
            return bool(pa.is_format_supported(rate, **kwargs))
    except ValueError:  # PyAudio raises instead of returning False
        return False


def choose_format(pa: pyaudio.PyAudio, dev: DeviceInfo, direction: Direction,
                  channels: int | None = None) -> tuple[int, int]:
    """Pick (rate_hz, channels) for a device: 24 kHz mono when it can, else what it offers.

    Mono is preferred (no downmix needed); stereo-only devices get 2 channels. The rate is
    24000 when supported, else the device's default rate, else the first supported common
    rate. Raises `AudioDeviceError` when nothing works.
    """
    options = [channels] if channels else ([1, 2] if dev.channels(direction) >= 2 else [1])
    for ch in options:
        for rate in (SAMPLE_RATE_HZ, dev.default_rate_hz, *_FALLBACK_RATES):
            if rate > 0 and _supported(pa, dev, direction, rate, ch):
                return rate, ch
    raise AudioDeviceError(
        f"{direction} device {dev.name!r} cannot be opened in any usual 16-bit format "
        f"(tried {options} channels at 24000, {dev.default_rate_hz} and "
        f"{', '.join(map(str, _FALLBACK_RATES))} Hz): it is unplugged, in use by another "
        f"program, or unsupported; {describe_available(list_devices(pa), direction)}. "
        "Check `voice-kiosk devices`.")


def open_stream(pa: pyaudio.PyAudio, device: DeviceInfo, direction: Direction, rate: int,
                channels: int, block: int,
                callback: Callable[..., tuple[bytes | None, int]],
                pin: ThreadStatePin | None = None) -> pyaudio.Stream:
    """Open and start a 16-bit callback stream; AudioDeviceError (naming the device and listing
    the ones that exist) when the device refuses. With `pin`, the callback thread keeps one
    Python thread state (kiosk/audio/thread_state.py): `pin.drop` it before closing."""
    what = "microphone" if direction == "input" else "speaker"
    if pin is not None:
        pin.stream_opens(block / rate)
        inner = callback

        def callback(*args: Any) -> tuple[bytes | None, int]:
            pin.enter()
            return inner(*args)
    try:
        with quiet_stderr():
            return pa.open(format=pyaudio.paInt16, channels=channels, rate=rate,
                           input=direction == "input", output=direction == "output",
                           input_device_index=device.index if direction == "input" else None,
                           output_device_index=device.index if direction == "output" else None,
                           frames_per_buffer=block, stream_callback=callback)
    except OSError as exc:
        raise AudioDeviceError(
            f"could not open {what} {device.name!r} ({channels} ch at {rate} Hz): {exc}. "
            "Is it in use by another program or just unplugged? "
            f"{describe_available(list_devices(pa), direction)}.") from None


def reported_latency_s(time_info: dict, direction: Direction) -> float:
    """What a callback's `time_info` says of the device's latency: from sound entering the
    microphone to its block reaching the callback (input), or from the callback to its block
    leaving the speaker (output). 0 when the host reports nothing; bounded to 0.5 s."""
    try:
        if direction == "input":
            lat = float(time_info["current_time"]) - float(time_info["input_buffer_adc_time"])
        else:
            lat = float(time_info["output_buffer_dac_time"]) - float(time_info["current_time"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    return min(max(lat, 0.0), 0.5)


def close_stream(stream: pyaudio.Stream | None) -> None:
    """Close a stream without draining it: a stalled or unplugged device must not hang us."""
    if stream is None:
        return
    try:
        with quiet_stderr():
            stream.close()
    except OSError:
        pass  # the device is already gone; nothing left to release


def stream_is_active(stream: pyaudio.Stream | None) -> bool:
    """PortAudio still runs the stream (False when closed or after a host error ended it)."""
    try:
        return stream is not None and stream.is_active()
    except OSError:
        return False

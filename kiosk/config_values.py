"""Rules for single values of the YAML file: files and their modes, WAV files, URLs,
colours, clock times and GPIO pins. `kiosk.config_checker` walks the file and reports; these say
what is wrong with one value (None when nothing is)."""

from __future__ import annotations

import os
import re
import stat
import typing
from typing import Any

from kiosk import settings as S

CREDENTIALS_VAR = "CREDENTIALS_DIRECTORY"


def expand_path(value: str) -> str:
    """Expand ${CREDENTIALS_DIRECTORY} (systemd LoadCredential=) and ~ in a configured path."""
    return os.path.expanduser(os.path.expandvars(value))


def parse_clock_time(text: str) -> tuple[int, int] | None:
    """"22:00" -> (22, 0); None unless it is HH:MM (or H:MM) within a day."""
    hours, sep, minutes = text.partition(":")
    if (not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2
            or len(hours) > 2):
        return None
    h, m = int(hours), int(minutes)
    return (h, m) if h < 24 and m < 60 else None


def pin_clashes(gpio: S.GpioSettings) -> list[tuple[str, str]]:
    """(key, problem) for every configured pin that is not a GPIO or is already taken by
    another setting (the button, the light, the switch, the relay and its reset input)."""
    from gpiozero import pi_info

    # A 40-pin header (every Pi since the B+): names like BOARD11 map to their GPIO.
    header = pi_info("d03114")
    used: list[tuple[str, int | str]] = [("gpio.button_pin", gpio.button_pin)]
    if gpio.led_kind in ("single", "pwm"):
        used.append(("gpio.led_pin", gpio.led_pin))
    elif gpio.led_kind == "rgb":
        used += [(f"gpio.rgb_pins[{i}]", pin) for i, pin in enumerate(gpio.rgb_pins)]
    for key, pin in (("gpio.switch_pin", gpio.switch_pin),
                     ("gpio.nurse_call.pin", gpio.nurse_call.pin),
                     ("gpio.nurse_call.reset_pin", gpio.nurse_call.reset_pin)):
        if pin is not None:
            used.append((key, pin))
    problems: list[tuple[str, str]] = []
    owner: dict[str, str] = {}
    for key, pin in used:
        found = [info.name for _, info in header.find_pin(pin)]
        if found and not found[0].startswith("GPIO"):
            problems.append((key, f"`{pin}` is the header's {found[0]} pin, not a GPIO; use "
                                  "a BCM number like 27 or a name like GPIO27 (`pinout` shows "
                                  "the header)."))
            continue
        # Pins beyond the 40-pin header (a Compute Module's) are compared by their name.
        name = found[0] if found else (f"GPIO{pin}" if isinstance(pin, int) else
                                       re.sub(r"^BCM", "GPIO", str(pin).upper()))
        if not re.fullmatch(r"GPIO\d+", name):
            problems.append((key, f"`{pin}` is not a pin name; use a BCM number like 27 or a "
                                  "name like GPIO27 or BOARD13 (`pinout` shows the header)."))
            continue
        if name in owner:
            problems.append((key, f"`{pin}` is {name}, already used by {owner[name]}; give "
                                  "each part its own pin."))
            continue
        owner[name] = key
    return problems


def is_url(value: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    return parts.scheme in ("http", "https", "ws", "wss") and bool(parts.hostname)


def is_color(value: str) -> bool:
    return (isinstance(value, str) and len(value) == 7 and value[0] == "#"
            and all(c in "0123456789abcdefABCDEF" for c in value[1:]))


def file_problem(value: str, secret: bool) -> str | None:
    """What is wrong with a configured file, or None. Secret files must not be readable by
    group or others (the message gives the chmod to run)."""
    if CREDENTIALS_VAR in value and CREDENTIALS_VAR not in os.environ:
        return None  # only systemd knows where LoadCredential= puts it; checked at start-up
    path = expand_path(value)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"file `{path}` does not exist; create it or fix the path."
    except OSError as exc:
        return f"cannot check `{path}`: {exc.strerror}."
    if not stat.S_ISREG(st.st_mode):
        return f"`{path}` is not a regular file."
    if not os.access(path, os.R_OK):
        return f"`{path}` is not readable by this user; check owner and mode."
    if secret and st.st_mode & 0o077:
        return (f"secret file `{path}` is readable by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}")
    return None


def wav_file_problem(value: str, meta: typing.Mapping[str, Any]) -> str | None:
    if CREDENTIALS_VAR in value and CREDENTIALS_VAR not in os.environ:
        return None  # see file_problem
    from kiosk.audio.wavfile import wav_problem  # numpy: only when a WAV file is configured

    return wav_problem(expand_path(value), meta.get("max_s"))

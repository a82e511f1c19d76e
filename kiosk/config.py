"""Load and check the one YAML file IT staff edit.

Every problem is reported at once, each as ``FILE:LINE: key.path: what is wrong. what to do``,
never as a traceback. The schema is the dataclasses in `kiosk.settings`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from kiosk import settings as S
from kiosk.config_checker import Checker, Problem

DEFAULT_PATH = "/etc/voice-kiosk/config.yaml"
ENV_VAR = "VOICE_KIOSK_CONFIG"


class ConfigError(Exception):
    """All problems found in one file."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def resolve_path(cli_path: str | None) -> str:
    """`--config PATH` wins, then $VOICE_KIOSK_CONFIG, then /etc/voice-kiosk/config.yaml."""
    return cli_path or os.environ.get(ENV_VAR) or DEFAULT_PATH


def load(path: str) -> S.Settings:
    """Read, parse and check `path`; raises ConfigError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(path, 0, "(file)", "file not found. Copy the example: "
                                   "cp config/voice-kiosk.yaml " + path)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path, 0, "(file)", f"cannot read: {exc}")]) from None
    return parse(text, path)


def parse(text: str, path: str = "<string>") -> S.Settings:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(path, line, "(yaml)", f"invalid YAML: {problem}. Check "
                                   "indentation (spaces, not tabs) and quoting.")]) from None
    checker = Checker(path)
    result = checker.build_root(root)
    if checker.problems:
        raise ConfigError(sorted(checker.problems, key=lambda p: (p.line, p.key)))
    return result


def notices(settings: S.Settings) -> list[str]:
    """What a valid file still leaves unusable or unusual, for IT staff (check-config prints
    them; the daemon shows the first kind as `error`)."""
    from kiosk.audio.prompts import notices as prompt_notices

    out = list(settings.notes)
    if settings.gateway.language and not settings.kiosk.language:
        out.append(f"gateway.language is now kiosk.language: move `language: "
                   f"{settings.gateway.language}` to the kiosk: section.")
    out += prompt_notices(settings)
    if not settings.gateway.url:
        out.append(no_gateway_message(settings.source))
    elif settings.uses_simulator:
        out.append("gateway.url is `simulator`: the kiosk talks to its built-in loopback "
                   "simulator, which answers with a tone. For demos only.")
    return out


def no_gateway_message(source: str) -> str:
    """The one sentence (STATUS=, journal, check-config) for a kiosk with no gateway."""
    return (f"gateway.url is empty: set gateway.url and gateway.api_key_file in {source}, "
            "then `systemctl reload voice-kiosk`")


def dump(settings: S.Settings) -> str:
    """The effective configuration as YAML, with personal details masked (secrets are never
    inline; files that hold them are shown by path only)."""
    data = dataclasses.asdict(settings)
    data.pop("source", None)
    email = data["gateway"].get("email")
    if email:
        user, _, domain = email.partition("@")
        data["gateway"]["email"] = f"{user[:1]}***@{domain}"
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)

#!/usr/bin/python
"""Ansible module: set a few keys of voice-kiosk's config.yaml in place.

/etc/voice-kiosk/config.yaml is a dpkg conffile that the ward edits: Ansible owns only the
keys it is given (a kiosk's id, location, gateway). Each is changed on its own line, with
its comment and every other line (the ward's edits, the comments) left as they are; a key the
file lacks is added to its section. The result is parsed back and must hold exactly the
values asked for, or nothing is written. Run it with an interpreter that has PyYAML (the
kiosk's own: /opt/voice-kiosk/venv/bin/python).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

DOCUMENTATION = r"""
module: voice_kiosk_config
short_description: Set keys of voice-kiosk's config.yaml, keeping the rest of the file
options:
  path:
    description: The configuration file (it must exist: the package installs it).
    type: path
    default: /etc/voice-kiosk/config.yaml
  settings:
    description: Top-level sections, each a mapping of keys to the values to set.
    type: dict
    required: true
"""

EXAMPLES = r"""
- voice_kiosk_config:
    settings:
      kiosk: {id: ward3-bed12, location: "ward 3, bed 12"}
      gateway: {url: "https://voice.hospital.example"}
  vars:
    ansible_python_interpreter: /opt/voice-kiosk/venv/bin/python
"""

# A scalar value as it may stand after "key:", then an optional comment.
VALUE = r'(?P<value>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'|[^\s#][^\n]*?)?'
COMMENT = r"(?P<gap>[ \t]+)(?P<comment>#.*)"


class ConfigEditError(ValueError):
    """The file cannot be edited safely (the message says why)."""


def render(value: Any) -> str:
    """A value as a YAML flow scalar or collection (JSON is YAML)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def _section_bounds(lines: list[str], section: str) -> tuple[int, int] | None:
    """Index of the section's header line and of the line after its last line."""
    header = re.compile(rf"^{re.escape(section)}:[ \t]*(#.*)?$")
    for start, line in enumerate(lines):
        if header.match(line.rstrip("\n")):
            end = start + 1
            while end < len(lines) and not re.match(r"^[^\s#]", lines[end]):
                end += 1
            return start, end
    return None


def set_key(lines: list[str], section: str, key: str, value: Any) -> list[str]:
    """The lines with `section.key` set to `value` (a new line if the key is missing)."""
    new_value = render(value)
    bounds = _section_bounds(lines, section)
    if bounds is None:
        tail = [] if not lines or lines[-1].endswith("\n") else ["\n"]
        return [*lines, *tail, "\n", f"{section}:\n", f"  {key}: {new_value}\n"]
    start, end = bounds
    body = lines[start + 1:end]
    indents = [m.group(1) for line in body if (m := re.match(r"^( +)[^\s#]", line))]
    indent = min(indents, key=len) if indents else "  "
    pattern = re.compile(rf"^{indent}{re.escape(key)}:(?P<sep>[ \t]*){VALUE}(?:{COMMENT})?$")
    for i in range(start + 1, end):
        match = pattern.match(lines[i].rstrip("\n"))
        if not match:
            continue
        old = match.group("value") or ""
        if old in ("|", ">", "|-", ">-", "|+", ">+") or (not old and i + 1 < end and re.match(
                rf"^{indent}[ ]+\S", lines[i + 1])):
            raise ConfigEditError(f"{section}.{key} has a block value: edit it by hand")
        if old == new_value:
            return lines
        head = f"{indent}{key}: {new_value}"
        if match.group("comment"):
            # Keep the comment where it was when the new value leaves room for it.
            column = match.start("comment")
            head += " " * max(1, column - len(head)) + match.group("comment")
        return [*lines[:i], head + "\n", *lines[i + 1:]]
    # A new key goes after the section's last line that is not blank.
    insert = end
    while insert > start + 1 and not lines[insert - 1].strip():
        insert -= 1
    return [*lines[:insert], f"{indent}{key}: {new_value}\n", *lines[insert:]]


def edit(text: str, settings: dict[str, dict[str, Any]]) -> str:
    """The configuration text with every key of `settings` set (comments kept)."""
    lines = text.splitlines(keepends=True)
    for section, values in settings.items():
        if not isinstance(values, dict):
            raise ConfigEditError(f"settings.{section} must be a mapping of keys to values")
        for key, value in values.items():
            lines = set_key(lines, section, str(key), value)
    return "".join(lines)


def verify(text: str, settings: dict[str, dict[str, Any]]) -> None:
    """Parse the edited text: it must be valid YAML holding exactly the values asked for."""
    import yaml

    try:
        parsed = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigEditError(f"the edited file would not parse: {exc}") from exc
    for section, values in settings.items():
        for key, value in values.items():
            got = (parsed.get(section) or {}).get(key)
            if got != value:
                raise ConfigEditError(f"{section}.{key} would read {got!r}, not {value!r}")


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "default": "/etc/voice-kiosk/config.yaml"},
                       "settings": {"type": "dict", "required": True}},
        supports_check_mode=True)
    path = module.params["path"]
    settings = module.params["settings"]
    if not os.path.isfile(path):
        module.fail_json(msg=f"{path} does not exist: install the voice-kiosk package first")
    with open(path, encoding="utf-8") as fh:
        before = fh.read()
    try:
        after = edit(before, settings)
        verify(after, settings)
    except ConfigEditError as exc:
        module.fail_json(msg=f"{path}: {exc}")
    changed = after != before
    result: dict[str, Any] = {"changed": changed, "path": path}
    if module._diff:
        result["diff"] = {"before": before, "after": after, "before_header": path,
                          "after_header": path}
    if changed and not module.check_mode:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".config.yaml.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(after)
        module.atomic_move(tmp, path)  # keeps the file's owner and mode (root:voice-kiosk)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

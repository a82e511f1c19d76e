"""The checker behind `kiosk.config.parse`: walks the composed YAML nodes against the
dataclasses of `kiosk.settings` and collects every problem with its file, line and key."""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kiosk import language
from kiosk import settings as S
from kiosk.config_values import (
    expand_path,
    file_problem,
    is_color,
    is_url,
    parse_clock_time,
    pin_clashes,
    wav_file_problem,
)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class Checker:
    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self._positions: dict[str, Node] = {}  # section path -> its mapping node, for lines

    def fail(self, node: Node | None, key: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.problems.append(Problem(self.file, line, key, message))

    def build_root(self, root: Node | None) -> S.Settings:
        if root is None or (isinstance(root, ScalarNode) and root.value == ""):
            return S.Settings(source=self.file)
        if not isinstance(root, MappingNode):
            self.fail(root, "(top level)", "expected sections like `audio:` and `gateway:`")
            return S.Settings(source=self.file)
        sections: dict[str, Any] = {}
        notes: list[str] = []
        for key_node, value_node in self._pairs(root, "", [*S.SECTIONS, *S.LEGACY_SECTIONS]):
            name = key_node.value
            if name in S.LEGACY_SECTIONS:
                new, renamed = S.LEGACY_SECTIONS[name]
                if new in sections or any(k.value == new for k, _ in root.value):
                    self.fail(key_node, name, f"`{name}:` is the old name of `{new}:`, which "
                                              "is also given; keep one.")
                    continue
                value_node = _rename_keys(value_node, renamed)
                notes.append(f"{self.file}:{key_node.start_mark.line + 1}: the `{name}:` "
                             f"section is now called `{new}:`"
                             + "".join(f" (and `{o}` is `{n}`)" for o, n in renamed.items())
                             + "; rename it when you next edit the file.")
                sections[new] = self.build_dataclass(S.SECTIONS[new], value_node, name,
                                                     key_node)
                continue
            sections[name] = self.build_dataclass(S.SECTIONS[name], value_node, name, key_node)
        settings = S.Settings(**sections, source=self.file, notes=tuple(notes))
        self._cross_checks(settings, root)
        return settings

    def _pairs(self, node: MappingNode, prefix: str, allowed: list[str]):
        """Yield (key, value) nodes with known names; report unknown and duplicate keys."""
        seen: set[str] = set()
        for key_node, value_node in node.value:
            name = str(key_node.value)
            path = f"{prefix}{name}"
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f" Did you mean `{prefix}{close[0]}`?" if close else (
                    f" Known keys here: {', '.join(allowed)}.")
                self.fail(key_node, path, f"unknown key.{hint}")
                continue
            if name in seen:
                self.fail(key_node, path, "given twice; keep one.")
                continue
            seen.add(name)
            yield key_node, value_node

    def build_dataclass(self, cls: type, node: Node, path: str, key_node: Node) -> Any:
        if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
            return cls()
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"expected a mapping of keys under `{path}:`.")
            return cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for k_node, v_node in self._pairs(node, f"{path}.", list(fields)):
            name = k_node.value
            self._positions[f"{path}.{name}"] = k_node
            ok, value = self.check(v_node, hints[name], fields[name].metadata, f"{path}.{name}")
            if ok:
                values[name] = value
        self._positions[path] = key_node
        return cls(**values)

    def check(self, node: Node, tp: Any, meta: typing.Mapping[str, Any], path: str
              ) -> tuple[bool, Any]:
        """Convert and validate one value against its declared type and rule."""
        args = typing.get_args(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a section in a section
            # Its valid keys are kept even when another is wrong (already reported), so the
            # checks across sections see the pins that were given, not the defaults.
            return True, self.build_dataclass(tp, node, path, node)
        if meta.get("kind") == "clock_time":
            return self._check_clock_time(node, path)
        if origin is dict:
            return self._check_dict(node, args[1], meta, path)
        if origin is list:
            return self._check_list(node, args[0], meta, path)
        value = self._scalar(node)
        allowed = set(args) if origin in (types.UnionType, typing.Union) else {tp}
        if value is None:
            if type(None) in allowed:
                return True, None
            return self._bad(node, path, "must not be empty" + _help(meta))
        if meta.get("kind") == "pin":
            return self._check_pin(node, value, path)
        if isinstance(value, bool):
            if bool in allowed:
                return True, value
            if str in allowed:  # YAML 1.1 reads on/off/yes/no as booleans
                return self._bad(node, path, f"`{node.value}` was read as true/false; put it "
                                 f"in quotes: \"{node.value}\"." + _help(meta))
            return self._bad(node, path, f"expected {_type_words(allowed)}, got `{value}`"
                             + _help(meta))
        if isinstance(value, int) and (int in allowed or float in allowed):
            value = value if int in allowed else float(value)
        elif not ((isinstance(value, float) and float in allowed)
                  or (isinstance(value, str) and str in allowed)):
            shown = node.value if isinstance(node, ScalarNode) else "a list or mapping"
            return self._bad(node, path, f"expected {_type_words(allowed)}, got `{shown}`"
                             + _help(meta))
        return self._check_rule(node, value, meta, path)

    def _check_rule(self, node: Node, value: Any, meta: typing.Mapping[str, Any], path: str
                    ) -> tuple[bool, Any]:
        if "range" in meta and isinstance(value, (int, float)):
            lo, hi = meta["range"]
            if not lo <= value <= hi:
                return self._bad(node, path, f"{value} is out of range; use {lo} to {hi}."
                                 + _help(meta))
        if "choices" in meta and value not in meta["choices"]:
            names = [c for c in meta["choices"] if c is not None]
            close = difflib.get_close_matches(str(value), names, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            return self._bad(node, path, f"`{value}` is not one of {', '.join(names)}.{hint}")
        kind = meta.get("kind")
        if kind == "url" and value and value != S.SIMULATOR_URL and not is_url(value):
            return self._bad(node, path, f"`{value}` is not a URL like "
                             "https://gateway.example.org.")
        if kind == "color" and not is_color(value):
            return self._bad(node, path, f"`{value}` is not a colour like \"#ff8800\" "
                             "(quote it: # starts a comment in YAML).")
        if kind == "output_path" and value is not None:
            folder = os.path.dirname(os.path.abspath(expand_path(value)))
            if not os.path.isdir(folder):
                return self._bad(node, path, f"folder `{folder}` does not exist; create it "
                                 "(the kiosk creates the file itself).")
        if kind in ("secret_file", "path") and value is not None:
            problem = file_problem(value, secret=kind == "secret_file")
            if problem:
                return self._bad(node, path, problem)
        if kind == "wav" and value is not None:
            problem = file_problem(value, secret=False) or wav_file_problem(value, meta)
            if problem:
                return self._bad(node, path, problem)
        if kind == "language" and value is not None:
            problem = language.problem(value)
            if problem:
                return self._bad(node, path, problem + ".")
            value = language.parse(value).tag  # canonical case: pt-BR
        if "max_chars" in meta and isinstance(value, str):
            if not value.strip():
                return self._bad(node, path, "must not be empty" + _help(meta))
            if len(value) > meta["max_chars"]:
                return self._bad(node, path, f"{len(value)} characters; keep it under "
                                 f"{meta['max_chars']} (a patient listens to all of it).")
        return True, value

    def _check_clock_time(self, node: Node, path: str) -> tuple[bool, Any]:
        # The text as written: YAML 1.1 reads an unquoted 22:00 as the number 1320.
        if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
            return True, None
        text = node.value.strip() if isinstance(node, ScalarNode) else ""
        if parse_clock_time(text) is None:
            shown = text or "a list or mapping"
            return self._bad(node, path, f"`{shown}` is not a time of day; use HH:MM from "
                             "00:00 to 23:59, e.g. \"22:00\".")
        hours, minutes = parse_clock_time(text) or (0, 0)
        return True, f"{hours:02d}:{minutes:02d}"

    def _check_pin(self, node: Node, value: Any, path: str) -> tuple[bool, Any]:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 53:
            return True, value
        if isinstance(value, str) and value.strip():
            return True, value.strip()
        return self._bad(node, path, f"`{value}` is not a pin: use a BCM number like 17 "
                         "or a name like GPIO17 or BOARD11.")

    def _check_dict(self, node: Node, value_tp: Any, meta: typing.Mapping[str, Any], path: str
                    ) -> tuple[bool, Any]:
        if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
            return True, {}
        if not isinstance(node, MappingNode):
            return self._bad(node, path, "expected a mapping." + _help(meta))
        before = len(self.problems)
        out: dict[str, Any] = {}
        keys = list(meta.get("keys", ()))
        for k_node, v_node in self._pairs(node, f"{path}.", keys):
            sub = f"{path}.{k_node.value}"
            if isinstance(value_tp, type) and dataclasses.is_dataclass(value_tp):
                out[k_node.value] = self.build_dataclass(value_tp, v_node, sub, k_node)
            else:
                ok, value = self.check(v_node, value_tp, meta, sub)
                if ok:
                    out[k_node.value] = value
        return len(self.problems) == before, out

    def _check_list(self, node: Node, item_tp: Any, meta: typing.Mapping[str, Any], path: str
                    ) -> tuple[bool, Any]:
        if not isinstance(node, SequenceNode):
            return self._bad(node, path, "expected a list like [12, 13, 19]." + _help(meta))
        if "length" in meta and len(node.value) != meta["length"]:
            return self._bad(node, path, f"expected {meta['length']} items, got "
                             f"{len(node.value)}." + _help(meta))
        items = []
        for i, item in enumerate(node.value):
            ok, value = self.check(item, item_tp, meta, f"{path}[{i}]")
            if not ok:
                return False, None
            items.append(value)
        return True, items

    def _scalar(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            return node  # a collection where a scalar was expected; the caller reports it
        return self._constructor.construct_object(node, deep=True)

    def _bad(self, node: Node, path: str, message: str) -> tuple[bool, Any]:
        self.fail(node, path, message)
        return False, None

    def _cross_checks(self, s: S.Settings, root: MappingNode) -> None:
        """Rules that involve several keys (reported at the section's line)."""
        gw = s.gateway
        node = self._positions.get("gateway", root)
        bad = {p.key for p in self.problems}

        def given(key: str) -> bool:  # present in the file (a bad value is reported already)
            return bool(getattr(gw, key)) or f"gateway.{key}" in bad

        if given("email") and not given("password_file"):
            self.fail(node, "gateway.password_file", "missing required key: `email` is set, "
                      "so `password_file` must name the file holding its password.")
        if given("password_file") and not given("email"):
            self.fail(node, "gateway.email", "missing required key: `password_file` is set, "
                      "so `email` must name the account to log in as.")
        methods = [given("api_key_file"), given("token_file"), given("email")]
        if gw.url and gw.url != S.SIMULATOR_URL and not any(methods):
            self.fail(node, "gateway.api_key_file", "missing required key: `url` is set, so "
                      "give one credential: api_key_file (recommended for kiosks), token_file, "
                      "or email + password_file.")
        if sum(methods) > 1:
            self.fail(node, "gateway", "more than one credential given; keep exactly one of "
                      "api_key_file, token_file, email + password_file.")
        self._bedside_checks(s, root)
        if s.kiosk.language and gw.language and s.kiosk.language != gw.language:
            self.fail(node, "gateway.language", f"`{gw.language}` differs from kiosk.language "
                      f"`{s.kiosk.language}`; remove gateway.language (kiosk.language is the "
                      "one setting now).")
        visit = s.visit
        if visit.idle_timeout_s > visit.max_visit_s:
            self.fail(self._positions.get("visit", self._positions.get("session", root)),
                      "visit.idle_timeout_s", f"{visit.idle_timeout_s} is longer than "
                      f"visit.max_visit_s ({visit.max_visit_s}); make it shorter.")


    def _bedside_checks(self, s: S.Settings, root: MappingNode) -> None:
        """The assistive switch, the nurse request relay and the night profile."""
        gpio, night = s.gpio, s.night
        gpio_node = self._positions.get("gpio", root)
        bad = {p.key for p in self.problems}
        relay = gpio.nurse_call.pin is not None or any(
            key in ("gpio.nurse_call", "gpio.nurse_call.pin") for key in bad)
        if gpio.switch_pin is not None and gpio.switch_role == "nurse_call" and not relay:
            self.fail(gpio_node, "gpio.nurse_call.pin", "missing required key: "
                      "`switch_role` is nurse_call, so the relay's pin must be set (or set "
                      "`switch_role: talk`).")
        if s.realtime.nurse_call_tool and not relay:
            self.fail(self._positions.get("realtime", root), "gpio.nurse_call.pin",
                      "missing required key: `realtime.nurse_call_tool` is true, so the "
                      "relay's pin must be set (or set `nurse_call_tool: false`).")
        if gpio.min_press_ms >= gpio.long_press_s * 1000:
            self.fail(self._positions.get("gpio.min_press_ms", gpio_node), "gpio.min_press_ms",
                      f"{gpio.min_press_ms} ms is not shorter than gpio.long_press_s "
                      f"({gpio.long_press_s:g} s); make it shorter, or no short press could "
                      "ever count.")
        for key, problem in pin_clashes(gpio):
            self.fail(self._positions.get(key.partition("[")[0], gpio_node), key, problem)
        if night.start is not None or night.end is not None:
            night_node = self._positions.get("night", root)
            if night.start is None and "night.start" not in bad:
                self.fail(night_node, "night.start", "missing required key: `end` is set, so "
                          "`start` must be too (or remove both: no night profile).")
            elif night.end is None and "night.end" not in bad:
                self.fail(night_node, "night.end", "missing required key: `start` is set, "
                          "so `end` must be too (or remove both: no night profile).")
            elif night.start is not None and night.start == night.end:
                self.fail(self._positions.get("night.end", night_node), "night.end",
                          f"equals night.start ({night.start}): the night would last no "
                          "time or all day; give different times.")


def _rename_keys(node: Node, renamed: dict[str, str]) -> Node:
    """A copy of a mapping node with some keys renamed (lines kept for error messages)."""
    if not isinstance(node, MappingNode):
        return node
    pairs = []
    for key, value in node.value:
        if isinstance(key, ScalarNode) and key.value in renamed:
            key = ScalarNode(key.tag, renamed[key.value], key.start_mark, key.end_mark)
        pairs.append((key, value))
    return MappingNode(node.tag, pairs, node.start_mark, node.end_mark, node.flow_style)


def _help(meta: typing.Mapping[str, Any]) -> str:
    return f" ({meta['help']})" if meta.get("help") else ""


def _type_words(allowed: set[Any]) -> str:
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
             type(None): "null"}
    return " or ".join(words.get(t, str(t)) for t in allowed if t is not type(None)) or "null"



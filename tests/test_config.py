"""The YAML file IT staff edit: the example stays valid, every mistake is reported clearly."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from kiosk import config
from kiosk.config_values import expand_path
from kiosk.settings import SECTIONS, LedPattern, Settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "voice-kiosk.yaml"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def secret(tmp_path: Path, name: str, mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text("va_k_not_a_real_key\n")
    path.chmod(mode)
    return str(path)


def problems(path: str) -> list[config.Problem]:
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    return info.value.problems


def test_example_file_loads_and_matches_the_built_in_defaults():
    loaded = config.load(str(EXAMPLE))
    assert loaded == Settings(source=str(EXAMPLE))


def test_example_file_documents_every_key_with_a_comment():
    text = EXAMPLE.read_text()
    for section, cls in SECTIONS.items():
        assert re.search(rf"^{section}:", text, re.M), section
        for f in dataclasses.fields(cls):
            line = re.search(rf"^  {f.name}:.*$", text, re.M)
            assert line, f"{section}.{f.name} missing from the example"
            assert "#" in line.group(0), f"{section}.{f.name} has no comment"
            if dataclasses.is_dataclass(f.default):
                for sub in dataclasses.fields(f.default):  # a section in a section
                    line = re.search(rf"^    {sub.name}:.*$", text, re.M)
                    assert line, f"{section}.{f.name}.{sub.name} missing from the example"
                    assert "#" in line.group(0), f"{section}.{f.name}.{sub.name}: no comment"


def test_three_mistakes_give_three_errors_with_file_key_and_line(tmp_path):
    path = write(tmp_path, "audio:\n  frame_ms: 5\n  volum: 50\nlogging:\n  level: loud\n")
    found = problems(path)
    assert [(p.line, p.key) for p in found] == [
        (2, "audio.frame_ms"), (3, "audio.volum"), (5, "logging.level")]
    assert all(p.file == path for p in found)
    text = [str(p) for p in found]
    assert text[0].startswith(f"{path}:2: audio.frame_ms: 5 is out of range; use 10 to 100")
    assert "Did you mean `audio.volume`?" in text[1]
    assert "debug, info, warning, error" in text[2]


def test_unknown_section_and_wrong_types(tmp_path):
    path = write(tmp_path, "gpoi:\n  x: 1\naudio:\n  cues: maybe\n  volume: loud\n"
                           "session:\n  idle_timeout_s: [1]\n")
    found = {p.key: p for p in problems(path)}
    assert "Did you mean `gpio`?" in found["gpoi"].message
    assert "true or false" in found["audio.cues"].message
    assert found["audio.volume"].line == 5 and "whole number" in found["audio.volume"].message
    assert found["session.idle_timeout_s"].line == 7


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "audio:\n  frame_ms: 20\n volume: [\n")
    (p,) = problems(path)
    assert p.key == "(yaml)" and p.line >= 3 and "invalid YAML" in p.message


def test_missing_file_says_how_to_create_it(tmp_path):
    (p,) = problems(str(tmp_path / "nope.yaml"))
    assert "not found" in p.message and "cp config/voice-kiosk.yaml" in p.message


def test_gateway_needs_exactly_one_credential(tmp_path):
    path = write(tmp_path, "gateway:\n  url: https://voice.example.org\n")
    (p,) = problems(path)
    assert p.key == "gateway.api_key_file" and p.line == 1 and "missing required" in p.message
    key = secret(tmp_path, "k")
    tok = secret(tmp_path, "t")
    path = write(tmp_path, f"gateway:\n  url: https://v.example.org\n  api_key_file: {key}\n"
                           f"  token_file: {tok}\n")
    assert "more than one credential" in problems(path)[0].message
    path = write(tmp_path, "gateway:\n  email: nurse@example.org\n")
    assert problems(path)[0].key == "gateway.password_file"


def test_secret_file_readable_by_others_is_refused_with_the_chmod_to_run(tmp_path):
    key = secret(tmp_path, "api-key", mode=0o644)
    path = write(tmp_path, f"gateway:\n  url: https://v.example.org\n  api_key_file: {key}\n")
    (p,) = problems(path)
    assert p.key == "gateway.api_key_file" and p.line == 3
    assert f"chmod 600 {key}" in p.message
    os.chmod(key, 0o600)
    loaded = config.load(path)
    assert loaded.gateway.api_key_file == key and not loaded.uses_simulator


def test_credentials_directory_paths_are_accepted_for_systemd(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = write(tmp_path, "gateway:\n  url: https://v.example.org\n"
                           "  api_key_file: ${CREDENTIALS_DIRECTORY}/gateway-api-key\n")
    assert config.load(path).gateway.api_key_file.endswith("/gateway-api-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    secret(tmp_path, "gateway-api-key")
    assert expand_path(config.load(path).gateway.api_key_file) == str(
        tmp_path / "gateway-api-key")


def test_led_pattern_overrides_and_devices(tmp_path):
    path = write(tmp_path, "gpio:\n  led_kind: rgb\n  led_patterns:\n    idle: {mode: 'off'}\n"
                           "    error: {mode: blink, on_s: 0.05, color: '#ff0000'}\n"
                           "audio:\n  input_device: USB\n  output_device: 3\n")
    s = config.load(path)
    assert s.gpio.pattern("idle") == LedPattern(mode="off")
    assert s.gpio.pattern("error").on_s == 0.05
    assert s.gpio.pattern("listening").mode == "on"  # default kept
    assert s.audio.input_device == "USB" and s.audio.output_device == 3


def test_bad_nested_values_are_all_reported(tmp_path):
    path = write(tmp_path, "gpio:\n  led_patterns:\n    idel: {mode: on}\n"
                           "    error: {color: ff0000}\n  rgb_pins: [1, 2]\n")
    keys = [p.key for p in problems(path)]
    assert keys == ["gpio.led_patterns.idel", "gpio.led_patterns.error.color", "gpio.rgb_pins"]


def test_config_path_resolution(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.resolve_path(None) == "/etc/voice-kiosk/config.yaml"
    monkeypatch.setenv(config.ENV_VAR, "/tmp/x.yaml")
    assert config.resolve_path(None) == "/tmp/x.yaml"
    assert config.resolve_path("/srv/k.yaml") == "/srv/k.yaml"


def test_dump_masks_the_login_email(tmp_path):
    pw = secret(tmp_path, "pw")
    path = write(tmp_path, f"gateway:\n  url: https://v.example.org\n  email: nurse@example.org\n"
                           f"  password_file: {pw}\n")
    out = config.dump(config.load(path))
    assert "nurse@" not in out and "n***@example.org" in out and pw in out


def test_unquoted_on_and_off_get_a_quoting_hint(tmp_path):
    path = write(tmp_path, "gpio:\n  led_patterns:\n    idle: {mode: off}\n")
    (p,) = problems(path)
    assert p.key == "gpio.led_patterns.idle.mode" and p.line == 3
    assert 'put it in quotes: "off"' in p.message


# -- at the bedside: the assistive switch, the nurse call relay, the night profile ----------


def test_bedside_keys_load_and_an_unquoted_time_is_read_as_written(tmp_path):
    # YAML 1.1 reads an unquoted 22:00 as the number 1320: the time must come out as written.
    path = write(tmp_path, "gpio:\n  min_press_ms: 150\n  switch_pin: BOARD13\n"
                           "  switch_role: nurse_call\n  nurse_call:\n    pin: 22\n"
                           "    active_high: false\n    hold_s: 2\n    reset_pin: GPIO23\n"
                           "realtime:\n  nurse_call_tool: true\n"
                           "night:\n  start: 22:00\n  end: 7:00\n  led_brightness: 0.05\n")
    s = config.load(path)
    assert (s.gpio.min_press_ms, s.gpio.switch_pin, s.gpio.switch_role) == (
        150, "BOARD13", "nurse_call")
    assert (s.gpio.nurse_call.pin, s.gpio.nurse_call.active_high, s.gpio.nurse_call.hold_s,
            s.gpio.nurse_call.reset_pin) == (22, False, 2.0, "GPIO23")
    assert s.realtime.nurse_call_tool is True
    assert (s.night.start, s.night.end, s.night.led_brightness) == ("22:00", "07:00", 0.05)
    assert s.night.enabled


@pytest.mark.parametrize("text", ["25:00", "22:60", "10pm", "2200", "[22, 0]"])
def test_a_night_time_that_is_not_hh_mm_names_the_key_and_line(tmp_path, text):
    path = write(tmp_path, f"night:\n  start: \"21:00\"\n  end: {text}\n")
    (p,) = problems(path)
    assert (p.key, p.line) == ("night.end", 3)
    assert "is not a time of day; use HH:MM from 00:00 to 23:59" in p.message


def test_bedside_ranges_and_choices(tmp_path):
    path = write(tmp_path, "gpio:\n  min_press_ms: 1500\n  switch_role: shout\n"
                           "  nurse_call:\n    pin: 22\n    hold_s: -1\n"
                           "    reset_after_s: 90000\n"
                           "night:\n  start: \"22:00\"\n  end: \"07:00\"\n  volume: 120\n"
                           "  cue_volume: -5\n  led_brightness: 2\n")
    found = {p.key: p for p in problems(path)}
    assert sorted(found) == sorted([
        "gpio.min_press_ms", "gpio.switch_role", "gpio.nurse_call.hold_s",
        "gpio.nurse_call.reset_after_s", "night.volume", "night.cue_volume",
        "night.led_brightness"])
    assert "use 0 to 1000" in found["gpio.min_press_ms"].message
    assert "talk, nurse_call" in found["gpio.switch_role"].message
    assert found["gpio.nurse_call.hold_s"].line == 6
    assert "use 0 to 1" in found["night.led_brightness"].message


@pytest.mark.parametrize(("yaml_text", "key", "line", "words"), [
    ("gpio:\n  switch_pin: 17\n", "gpio.switch_pin", 2, "GPIO17, already used by gpio.button_pin"),
    ("gpio:\n  nurse_call: {pin: BOARD12}\n", "gpio.nurse_call.pin", 2,
     "GPIO18, already used by gpio.led_pin"),
    ("gpio:\n  led_kind: rgb\n  switch_pin: GPIO13\n", "gpio.switch_pin", 3,
     "already used by gpio.rgb_pins[1]"),
    ("gpio:\n  switch_pin: 27\n  nurse_call:\n    pin: 22\n    reset_pin: BCM27\n",
     "gpio.nurse_call.reset_pin", 5, "already used by gpio.switch_pin"),
    ("gpio:\n  nurse_call: {pin: BOARD1}\n", "gpio.nurse_call.pin", 2,
     "the header's 3V3 pin, not a GPIO"),
    ("gpio:\n  switch_pin: FOO\n", "gpio.switch_pin", 2, "is not a pin name"),
])
def test_pins_that_clash_or_are_not_gpios(tmp_path, yaml_text, key, line, words):
    (p,) = problems(write(tmp_path, yaml_text))
    assert (p.key, p.line) == (key, line)
    assert words in p.message


def test_a_led_kind_without_a_pin_frees_its_pin(tmp_path):
    s = config.load(write(tmp_path, "gpio:\n  led_kind: rgb\n  switch_pin: 18\n"))
    assert s.gpio.switch_pin == 18  # led_pin is not used by an RGB light


def test_the_relay_must_be_there_for_the_switch_role_and_the_tool(tmp_path):
    path = write(tmp_path, "gpio:\n  switch_pin: 27\n  switch_role: nurse_call\n"
                           "realtime:\n  nurse_call_tool: true\n")
    found = problems(path)
    assert [(p.key, p.line) for p in found] == [("gpio.nurse_call.pin", 1),
                                                ("gpio.nurse_call.pin", 4)]
    assert "`switch_role` is nurse_call" in found[0].message
    assert "`realtime.nurse_call_tool` is true" in found[1].message


def test_a_wrong_relay_key_is_reported_once_not_as_a_missing_pin(tmp_path):
    # hold_s is wrong, the pin is given: no "missing pin", and the pin is still checked.
    path = write(tmp_path, "gpio:\n  switch_pin: 27\n  switch_role: nurse_call\n"
                           "  nurse_call:\n    pin: 17\n    hold_s: forever\n")
    found = {p.key: p for p in problems(path)}
    assert sorted(found) == ["gpio.nurse_call.hold_s", "gpio.nurse_call.pin"]
    assert "already used by gpio.button_pin" in found["gpio.nurse_call.pin"].message


def test_min_press_ms_must_be_shorter_than_the_long_press(tmp_path):
    (p,) = problems(write(tmp_path, "gpio:\n  long_press_s: 0.5\n  min_press_ms: 600\n"))
    assert (p.key, p.line) == ("gpio.min_press_ms", 3)
    assert "not shorter than gpio.long_press_s (0.5 s)" in p.message


@pytest.mark.parametrize(("yaml_text", "key", "words"), [
    ("night:\n  start: \"22:00\"\n", "night.end", "`start` is set, so `end` must be too"),
    ("night:\n  end: \"07:00\"\n", "night.start", "`end` is set, so `start` must be too"),
    ("night:\n  start: \"7:00\"\n  end: \"07:00\"\n", "night.end", "equals night.start"),
])
def test_a_night_needs_a_start_and_a_different_end(tmp_path, yaml_text, key, words):
    (p,) = problems(write(tmp_path, yaml_text))
    assert p.key == key and words in p.message

"""The YAML file IT staff edit: the example stays valid, every mistake is reported clearly."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from kiosk import config
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
    assert config.expand_path(config.load(path).gateway.api_key_file) == str(
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

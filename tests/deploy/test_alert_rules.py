"""The Prometheus alerting rules (deploy/prometheus), proven with Debian's real promtool.

- `promtool check rules` accepts them and `promtool test rules` passes their unit tests,
  in which every alert fires (exact labels and annotations) and also stays silent;
- the unit tests would catch a broken rule: each alert made never to fire, and each made to
  fire too widely (a plausible mistake per alert), fails them;
- the rules only use metric names and label values the kiosk's own code writes, and on the
  files the kiosk writes they fire exactly the alerts its state calls for.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import RULE_TESTS, RULES, run_promtool
from tests.deploy.kiosk_metrics import (
    BROKEN,
    JOB,
    KIOSKS,
    NODE_EXPORTER_METRICS,
    Sample,
    instance_of,
    promtool_series,
)
from tests.deploy.promql import literal_alternatives, metric_names, selectors

# Alerts about the whole fleet, not one kiosk: no `kiosk` label.
FLEET_ALERTS = frozenset({"VoiceKioskNoneReporting", "VoiceKioskGatewayOutage"})
SEVERITIES = {"critical", "warning"}
SCRAPE_LABELS = {"instance", "job"}


def load_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in load_rules() if "alert" in rule}


def unit_cases() -> list[tuple[Path, dict, dict]]:
    """(test file, test group, alert_rule_test case) for every case of every file."""
    found = []
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                found.append((path, group, case))
    return found


# -- promtool -------------------------------------------------------------------------------


def test_promtool_checks_the_rules(promtool: Path):
    result = run_promtool(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: Path):
    assert len(RULE_TESTS) >= 4
    result = run_promtool(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


# -- what the rules and their tests say -----------------------------------------------------


def test_every_alert_has_a_severity_a_summary_and_a_description():
    for name, rule in alerts().items():
        assert name.startswith("VoiceKiosk"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        description = rule["annotations"]["description"]
        assert len(description) > 120, f"{name}: say what is wrong and what to do"
        if name not in FLEET_ALERTS:
            assert "{{ $labels.kiosk }}" in rule["annotations"]["summary"], name


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_is_tested_firing_and_silent(name: str):
    rule = alerts()[name]
    cases = [(path, group, case) for path, group, case in unit_cases()
             if case["alertname"] == name]
    firing = [(path, group, case) for path, group, case in cases if case.get("exp_alerts")]
    silent = [case for _, _, case in cases if not case.get("exp_alerts")]
    assert firing, f"no unit test where {name} fires"
    assert silent, f"no unit test where {name} stays silent"
    for path, group, case in firing:
        where = f"{path.name}: {group['name']} at {case['eval_time']}"
        inputs = " ".join(series["series"] for series in group["input_series"])
        fired_for = set()
        for alert in case["exp_alerts"]:
            labels = alert["exp_labels"]
            assert labels["severity"] == rule["labels"]["severity"], where
            assert set(alert.get("exp_annotations", {})) == {"summary", "description"}, \
                f"{where}: name the exact annotations"
            if name in FLEET_ALERTS:
                assert "kiosk" not in labels, where
                continue
            assert labels["kiosk"] in alert["exp_annotations"]["summary"], where
            assert set(labels) >= SCRAPE_LABELS, f"{where}: name instance and job too"
            fired_for.add(labels["kiosk"])
        if name not in FLEET_ALERTS:
            kiosks_in_input = set(re.findall(r'kiosk="([^"]+)"', inputs))
            assert kiosks_in_input - fired_for, \
                f"{where}: no kiosk in the input for which {name} does not fire"


# -- the unit tests catch broken rules ------------------------------------------------------

# Per alert, plausible mistakes that make it fire where it must not: (old, new) in its expr
# or its `for` (old None: new is the whole expr). Each must make the unit tests fail.
TOO_WIDE: dict[str, list[tuple[str | None, str]]] = {
    "VoiceKioskMetricsMissing": [("unless on (kiosk)", "unless on (kiosk, instance)"),
                                 ("[1d]", "[2d]")],
    "VoiceKioskMetricsStale": [("> 120", "> 100")],
    "VoiceKioskMetricsUnreadable": [(None, "node_textfile_scrape_error == 1")],  # no join
    "VoiceKioskNoneReporting": [("for: 15m", "for: 5m")],
    "VoiceKioskRestartLoop": [(">= 3", ">= 2")],
    "VoiceKioskErrorStateHeld": [('state="error"', 'state=~"error|idle"'),
                                 ("for: 5m", "for: 3m")],
    "VoiceKioskGatewayAuthFailed": [('kind="auth"', 'kind=~"auth|network"'),
                                    ("[15m]", "[30m]")],
    "VoiceKioskConfigError": [('kind="config"', 'kind=~"config|auth"')],
    "VoiceKioskGatewayUnreachable": [(">= 2", ">= 1")],
    "VoiceKioskGatewayOutage": [(">= 3", ">= 2")],
    "VoiceKioskSoftwareError": [("protocol|internal", "protocol|internal|network")],
    "VoiceKioskNoAnswerForADay": [(">= 3", ">= 2"), ("== 0", "<= 1")],
    "VoiceKioskSlowAnswers": [("> 3", "> 1"), ("increase(voice_kiosk_answers_total[1h]) > 0",
                                               "voice_kiosk_answers_total >= 0")],
    "VoiceKioskSlowToListen": [("> 5", "> 2"), ("increase(voice_kiosk_visits_total[1h]) > 0",
                                                "voice_kiosk_visits_total >= 0")],
    "VoiceKioskAudioDeviceMissing": [("microphone|speaker", "microphone|speaker|gpio"),
                                     ("for: 2m", "for: 0m")],
    "VoiceKioskButtonUnavailable": [('part="gpio"', 'part=~"gpio|microphone"')],
    "VoiceKioskAudioCallbackErrors": [("[1h]", "[2h]")],
    "VoiceKioskTestCallFailed": [("== 0", "< 2")],
}


def test_every_alert_has_mutants():
    assert set(TOO_WIDE) == set(alerts())


def _mutated_run(promtool: Path, tmp_path: Path, name: str, mutate) -> str:
    """promtool test rules on the unit tests of one alert, with that alert mutated; returns
    promtool's output, asserting that it failed."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                mutate(rule)
    folder = tmp_path / "prometheus"
    (folder / "tests").mkdir(parents=True)
    (folder / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    files = []
    for path in RULE_TESTS:
        tests = yaml.safe_load(path.read_text())
        tests["tests"] = [g for g in tests["tests"]
                          if any(c["alertname"] == name for c in g.get("alert_rule_test", []))]
        if tests["tests"]:
            files.append(folder / "tests" / path.name)
            files[-1].write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run_promtool(promtool, "test", "rules", *files)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"the unit tests still pass with {name} broken"
    assert f"alertname: {name}," in output, output
    return output


@pytest.mark.parametrize("name", sorted(alerts()))
def test_the_unit_tests_fail_when_an_alert_never_fires(promtool: Path, tmp_path: Path,
                                                         name: str):
    def never(rule: dict) -> None:
        rule["for"] = "1000h"
    _mutated_run(promtool, tmp_path, name, never)


@pytest.mark.parametrize("name, old, new", [(name, old, new) for name, mutants in
                                            sorted(TOO_WIDE.items()) for old, new in mutants])
def test_the_unit_tests_fail_when_an_alert_fires_too_widely(promtool: Path, tmp_path: Path,
                                                              name: str, old: str | None,
                                                              new: str):
    def widen(rule: dict) -> None:
        if old is None:
            rule["expr"] = new
        elif old.startswith("for: "):
            assert rule.get("for") == old.removeprefix("for: "), rule
            rule["for"] = new.removeprefix("for: ")
        else:
            assert rule["expr"].count(old) == 1, f"{old!r} not once in {rule['expr']!r}"
            rule["expr"] = rule["expr"].replace(old, new)
    _mutated_run(promtool, tmp_path, name, widen)


# -- against what the kiosk really writes ---------------------------------------------------


def test_rules_use_only_metrics_the_kiosk_writes(written_names: set[str]):
    used: set[str] = set()
    for rule in load_rules():
        used |= metric_names(rule["expr"])
    unknown = used - written_names - NODE_EXPORTER_METRICS
    assert not unknown, f"metrics no kiosk writes: {sorted(unknown)}"


def test_rule_label_values_are_ones_the_kiosk_writes(kiosk_fleet: dict[str, list[Sample]]):
    values: dict[tuple[str, str], set[str]] = {}
    for samples in kiosk_fleet.values():
        for s in samples:
            for label, value in s.labels.items():
                values.setdefault((s.name, label), set()).add(value)
    checked = 0
    for rule in load_rules():
        for selector in selectors(rule["expr"]):
            if selector.metric in NODE_EXPORTER_METRICS:
                continue
            for m in selector.matchers:
                words = [m.value] if m.op == "=" else \
                    literal_alternatives(m.value) if m.op == "=~" else None
                assert words, f"{rule['alert']}: check {m} by hand or keep matchers simple"
                known = values.get((selector.metric, m.label))
                assert known, f"{rule['alert']}: {selector.metric} has no label {m.label}"
                missing = set(words) - known
                assert not missing, f"{rule['alert']}: {m.label}={sorted(missing)} is not " \
                                    f"written (the kiosk writes {sorted(known)})"
                checked += 1
    assert checked >= 8  # state, kinds and parts


def test_the_rules_on_the_kiosks_own_files(promtool: Path, tmp_path: Path,
                                           kiosk_fleet: dict[str, list[Sample]]):
    """The fleet's files as Prometheus would scrape them for half an hour, the counters
    starting at 0 and reaching the files' values at 10 min: the kiosk without devices and
    gateway fires exactly its alerts (from its own code's label values; its test call failed),
    the two healthy kiosks none (one passed a test call, one never ran one)."""
    def value(name: str, **labels: str) -> float:
        wanted = {"kiosk": BROKEN, **labels}
        return next(s.value for s in kiosk_fleet[BROKEN]
                    if s.name == name and s.labels == wanted)

    assert value("voice_kiosk_part_ok", part="microphone") == 0
    assert value("voice_kiosk_part_ok", part="speaker") == 0
    assert value("voice_kiosk_state", state="error") == 1
    assert value("voice_kiosk_errors_total", kind="config") >= 1

    series = promtool_series(kiosk_fleet, minutes=30)
    for s in series:  # counters: 0 for 10 minutes, then the file's value
        if s["series"].split("{")[0].endswith("_total"):
            value = s["values"].split("+")[0]
            s["values"] = f"0x10 {value}x20"
    target = {"kiosk": BROKEN, "instance": instance_of(BROKEN), "job": JOB}
    expected = {
        "VoiceKioskErrorStateHeld": [{**target, "state": "error", "severity": "critical"}],
        "VoiceKioskAudioDeviceMissing": [
            {**target, "part": "microphone", "severity": "critical"},
            {**target, "part": "speaker", "severity": "critical"}],
        "VoiceKioskConfigError": [{**target, "kind": "config", "severity": "critical"}],
        "VoiceKioskTestCallFailed": [{**target, "severity": "critical"}],
    }
    # Annotations are proven by the unit tests; here only which alerts fire, and for whom.
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    cases = [{"eval_time": "20m", "alertname": name,
              "exp_alerts": [{"exp_labels": labels} for labels in expected.get(name, [])]}
             for name in sorted(alerts())]
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
            "tests": [{"name": "the kiosk's own files", "interval": "1m",
                       "input_series": series, "alert_rule_test": cases}]}
    (tmp_path / "fleet.test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = run_promtool(promtool, "test", "rules", tmp_path / "fleet.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(KIOSKS) == 3  # and two of them healthy: nothing fired for those


def test_a_missing_promtool_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from tests.deploy.promtool import PromtoolUnavailable, find_promtool

    monkeypatch.setenv("PROMTOOL", str(tmp_path / "no-such-promtool"))
    with pytest.raises(PromtoolUnavailable, match="PROMTOOL="):
        find_promtool()


def test_the_readme_prometheus_configuration_loads_the_rules(promtool: Path, tmp_path: Path):
    """The README's prometheus.yml, with the rules where its install command puts them."""
    readme = (RULES.parents[2] / "README.md").read_text()
    m = re.search(r"```yaml\n(# /etc/prometheus/prometheus\.yml\n.*?)```", readme, re.DOTALL)
    assert m, "the README shows a prometheus.yml"
    installed = "/etc/prometheus/rules/voice-kiosk.rules.yml"
    assert installed in m.group(1) and f"voice-kiosk.rules.yml {installed}" in readme
    config = tmp_path / "prometheus.yml"
    config.write_text(m.group(1).replace(installed, str(RULES)))
    result = run_promtool(promtool, "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout

"""The Grafana dashboard (deploy/grafana/voice-kiosk-fleet.json) against what the kiosk writes.

- well-formed for Grafana: schema version, unique panel ids, panels on the 24-column grid
  without overlaps, a datasource variable every panel and query uses, a multi-value `kiosk`
  variable every query filters on, table overrides and column order naming real columns;
- every metric name in every query is one the kiosk's own code writes (a file rendered by
  `kiosk.service.metrics.Metrics`, parsed by prometheus_client) or node_exporter's, and every
  label value it matches is one the kiosk writes;
- every query is valid PromQL (promtool) and, on the kiosk's own files, the table's queries
  give exactly one row per kiosk selected, and every other panel's queries give data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DASHBOARD, run_promtool
from tests.deploy.kiosk_metrics import KIOSKS, NODE_EXPORTER_METRICS, Sample, promtool_series
from tests.deploy.promql import literal_alternatives, metric_names, selectors

# Written by the kiosk, deliberately on no panel: the last single latencies (the p95s are),
LEFT_OUT = {"voice_kiosk_answer_latency_last_seconds",
            "voice_kiosk_press_to_listening_last_seconds",
            # A nurse call is for the ward, whom the nurse-call system alerts at once; a
            # dashboard must not look like a backup for it (README, "Alerts and dashboard").
            # A relay that fails is shown as the gpio part missing.
            "voice_kiosk_nurse_call_active", "voice_kiosk_nurse_call_relay_closed",
            "voice_kiosk_nurse_calls_total",
            # The test call's counts and step timings: for `voice-kiosk test-call` and the
            # journal; the table shows its result and age.
            "voice_kiosk_test_calls_total",
            "voice_kiosk_test_call_last_duration_seconds",
            # The echo canceller's figures are for a bedside being looked into (its journal
            # says when the canceller falls back); the fleet view does not need them.
            "voice_kiosk_echo_mode", "voice_kiosk_aec_state", "voice_kiosk_aec_erle_db",
            "voice_kiosk_aec_delay_seconds", "voice_kiosk_aec_fallbacks_total"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict]) -> list[dict]:
    """Panels and rows, with the panels of collapsed rows."""
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


def query_panels() -> list[dict]:
    return [p for p in all_panels(dashboard()["panels"]) if p["type"] != "row"]


def targets() -> list[tuple[dict, dict]]:
    return [(panel, t) for panel in query_panels() for t in panel["targets"]]


def variable(name: str) -> dict:
    found = [v for v in dashboard()["templating"]["list"] if v["name"] == name]
    assert len(found) == 1, f"one template variable {name!r}"
    return found[0]


def substitute(expr: str, kiosk_regex: str) -> str:
    """The query Grafana sends with `kiosk` set to kiosk_regex."""
    out = expr.replace("$kiosk", kiosk_regex)
    assert "$" not in out, f"a variable the tests do not know in {expr!r}"
    return out


# -- well-formed for Grafana ----------------------------------------------------------------


def test_the_dashboard_is_well_formed():
    d = dashboard()
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["uid"] == "voice-kiosk-fleet" and d["title"]
    assert d["id"] is None  # importable into any Grafana
    assert d["time"]["from"] and d["refresh"]
    required = {r["id"] for r in d["__requires"]}
    assert {"grafana", "prometheus"} <= required
    assert {p["type"] for p in query_panels()} <= required


def test_panel_ids_are_unique_and_panels_sit_on_the_grid_without_overlapping():
    panels = all_panels(dashboard()["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["w"] >= 1 and g["h"] >= 1 and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_a_datasource_variable_that_every_panel_and_query_uses():
    ds = variable("datasource")
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    uses = {"type": "prometheus", "uid": "${datasource}"}
    for panel in query_panels():
        assert panel["datasource"] == uses, panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == uses, f"{panel['title']} {t['refId']}"


def test_a_kiosk_variable_that_every_query_filters_on(written_names: set[str]):
    kiosk = variable("kiosk")
    assert kiosk["type"] == "query"
    assert kiosk["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert kiosk["multi"] and kiosk["includeAll"] and kiosk["allValue"] == ".*"
    m = re.fullmatch(r"label_values\((\w+), kiosk\)", kiosk["query"])
    assert m and m.group(1) in written_names, kiosk["query"]
    for panel, t in targets():
        for s in selectors(t["expr"]):
            if s.metric in NODE_EXPORTER_METRICS:
                continue  # no kiosk label; joined to voice_kiosk_info, which is filtered
            assert any(m.label == "kiosk" and m.op == "=~" and m.value == "$kiosk"
                       for m in s.matchers), f"{panel['title']} {t['refId']}: {s.metric}"


def test_every_panel_has_a_title_a_description_and_unique_ref_ids():
    for panel in query_panels():
        assert panel["title"] and len(panel.get("description", "")) > 20, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["expr"].strip(), f"{panel['title']} {t['refId']}"


def test_the_table_overrides_and_column_order_name_real_columns():
    tables = [p for p in query_panels() if p["type"] == "table"]
    assert len(tables) == 1
    table = tables[0]
    assert all(t.get("format") == "table" and t.get("instant") for t in table["targets"])
    # What a Prometheus instant query in table format gives: Time, the labels it keeps, and
    # one value column per query ("Value #<refId>").
    columns = {"Time"} | {f"Value #{t['refId']}" for t in table["targets"]}
    for t in table["targets"]:
        outer = re.match(r"(?:round\()?\s*\w+ by \(([^)]*)\)", t["expr"])
        if outer:
            columns |= {label.strip() for label in outer.group(1).split(",")}
    ids = [tr["id"] for tr in table["transformations"]]
    assert ids[0] == "merge", "one row per kiosk: the queries' frames are merged first"
    organize = next(tr["options"] for tr in table["transformations"] if tr["id"] == "organize")
    for key in ("excludeByName", "indexByName", "renameByName"):
        unknown = set(organize.get(key, {})) - columns
        assert not unknown, f"organize.{key} names no column: {sorted(unknown)}"
    shown = columns - {k for k, hidden in organize["excludeByName"].items() if hidden}
    assert set(organize["indexByName"]) == shown, "every shown column has its place"
    named = {}
    for o in table["fieldConfig"]["overrides"]:
        assert o["matcher"]["id"] == "byName"
        field = o["matcher"]["options"]
        assert field in columns, f"an override for no column: {field}"
        display = [p["value"] for p in o["properties"] if p["id"] == "displayName"]
        named[field] = display[0] if display else field
    assert set(named) == shown, "every shown column has a readable name"
    assert len(set(named.values())) == len(named)


# -- against what the kiosk writes ----------------------------------------------------------


def test_every_query_uses_only_metrics_the_kiosk_writes(written_names: set[str]):
    used = set()
    for panel, t in targets():
        names = metric_names(t["expr"])
        unknown = names - written_names - NODE_EXPORTER_METRICS
        assert not unknown, f"{panel['title']} {t['refId']}: no kiosk writes {sorted(unknown)}"
        used |= names
    # Between them the panels show every family the kiosk writes but these.
    not_shown = written_names - used
    assert not_shown == LEFT_OUT, \
        f"on no panel: {sorted(not_shown - LEFT_OUT)} (show them, or add them to LEFT_OUT); " \
        f"no longer written: {sorted(LEFT_OUT - not_shown)}"


def test_every_label_value_a_query_matches_is_one_the_kiosk_writes(
        kiosk_fleet: dict[str, list[Sample]]):
    values: dict[tuple[str, str], set[str]] = {}
    for samples in kiosk_fleet.values():
        for s in samples:
            for label, value in s.labels.items():
                values.setdefault((s.name, label), set()).add(value)
    for panel, t in targets():
        for s in selectors(t["expr"]):
            if s.metric in NODE_EXPORTER_METRICS:
                continue
            for m in s.matchers:
                if m.label == "kiosk":
                    continue
                words = [m.value] if m.op == "=" else literal_alternatives(m.value)
                assert words, f"{panel['title']}: keep {m} simple enough to check"
                known = values.get((s.metric, m.label), set())
                assert set(words) <= known, \
                    f"{panel['title']} {t['refId']}: {m.label}={words}, written: {sorted(known)}"


def _recording_rules_test(tmp_path: Path, fleet: dict[str, list[Sample]],
                          cases: list[tuple[str, list[tuple[str, float]]]]) -> Path:
    """A promtool unit test that evaluates each expr on the fleet's files after 2 hours and
    expects exactly the given samples ({kiosk=...} or {} -> value)."""
    (tmp_path / "none.rules.yml").write_text("groups: []\n")
    exprs = [{"expr": expr, "eval_time": "120m",
              "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}
             for expr, samples in cases]
    test = {"rule_files": ["none.rules.yml"], "evaluation_interval": "1m",
            "tests": [{"name": "dashboard queries", "interval": "1m",
                       "input_series": promtool_series(fleet, minutes=150),
                       "promql_expr_test": exprs}]}
    path = tmp_path / "dashboard.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return path


def test_the_table_gives_one_row_per_selected_kiosk(promtool: Path, tmp_path: Path,
                                                    kiosk_fleet: dict[str, list[Sample]]):
    """Every query of the table, with two of the three kiosks selected, gives one series for
    each of those two and nothing for the third (so merging them makes one row per kiosk)."""
    selected = KIOSKS[:1] + KIOSKS[2:]
    table = next(p for p in query_panels() if p["type"] == "table")
    cases = [(f"count by (kiosk) ({substitute(t['expr'], '|'.join(selected))})",
              [(f'{{kiosk="{k}"}}', 1.0) for k in selected]) for t in table["targets"]]
    path = _recording_rules_test(tmp_path, kiosk_fleet, cases)
    result = run_promtool(promtool, "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_other_query_gives_data(promtool: Path, tmp_path: Path,
                                      kiosk_fleet: dict[str, list[Sample]]):
    others = [(panel, t) for panel, t in targets() if panel["type"] != "table"]
    assert len(others) >= 15
    cases = [(f"clamp_max(count({substitute(t['expr'], '.*')}), 1)", [("{}", 1.0)])
             for _, t in others]
    path = _recording_rules_test(tmp_path, kiosk_fleet, cases)
    result = run_promtool(promtool, "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("regex, expected", [(".*", 3.0), ("ward3-bed12", 1.0)])
def test_the_kiosk_variable_selects_kiosks(promtool: Path, tmp_path: Path,
                                           kiosk_fleet: dict[str, list[Sample]],
                                           regex: str, expected: float):
    """The variable's own query lists the kiosks, and the first stat counts the selected."""
    first = query_panels()[0]
    assert first["title"] == "Kiosks reporting"
    expr = substitute(first["targets"][0]["expr"], regex)
    path = _recording_rules_test(tmp_path, kiosk_fleet, [(expr, [("{}", expected)])])
    result = run_promtool(promtool, "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr

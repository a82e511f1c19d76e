"""The selector reader the rule and dashboard tests rely on: names found, others not."""

from __future__ import annotations

import pytest

from tests.deploy.promql import Matcher, Selector, literal_alternatives, metric_names, selectors


def test_names_in_an_alert_with_a_join_and_label_lists():
    expr = """
      (time() - node_textfile_mtime_seconds{file=~"(.*/)?voice-kiosk[^/]*\\\\.prom"})
        * on (instance, job) group_left (kiosk) max by (instance, job, kiosk) (voice_kiosk_info)
        > 120
    """
    assert selectors(expr) == [
        Selector("node_textfile_mtime_seconds",
                 (Matcher("file", "=~", r"(.*/)?voice-kiosk[^/]*\.prom"),)),  # unescaped
        Selector("voice_kiosk_info", ()),
    ]


def test_functions_aggregations_keywords_durations_and_variables_are_not_names():
    expr = ('sum without (kind) (increase(voice_kiosk_errors_total{kiosk=~"$kiosk", '
            'kind!="auth"}[$__rate_interval] offset 1h)) / ignoring(x) '
            'count(voice_kiosk_info) > bool 2 and on() vector(1) or absent(up) unless '
            'topk(3, voice_kiosk_uptime_seconds) @ end()')
    assert metric_names(expr) == {"voice_kiosk_errors_total", "voice_kiosk_info", "up",
                                  "voice_kiosk_uptime_seconds"}
    first = selectors(expr)[0]
    assert first.matchers == (Matcher("kiosk", "=~", "$kiosk"), Matcher("kind", "!=", "auth"))


def test_a_misspelt_name_is_found_as_it_is():
    assert metric_names('voice_kiosks_state{state="error"} == 1') == {"voice_kiosks_state"}


def test_aggregation_with_by_before_its_argument():
    assert metric_names("max by (kiosk, part) (voice_kiosk_part_ok) == 0") == \
        {"voice_kiosk_part_ok"}


def test_a_selector_without_a_name_is_refused():
    with pytest.raises(ValueError):
        metric_names('{__name__=~"voice_kiosk_.*"}')


def test_literal_alternatives():
    assert literal_alternatives("microphone|speaker") == ["microphone", "speaker"]
    assert literal_alternatives("network") == ["network"]
    assert literal_alternatives(".*") is None
    assert literal_alternatives("(.*/)?voice-kiosk.prom") is None

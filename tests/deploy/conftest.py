"""Fixtures of the alert and dashboard tests: the real promtool and the kiosk's real metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.kiosk_metrics import Sample, write_fleet
from tests.deploy.promtool import PromtoolUnavailable, find_promtool

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy/prometheus/voice-kiosk.rules.yml"
RULE_TESTS = sorted((REPO / "deploy/prometheus/tests").glob("*.yml"))
DASHBOARD = REPO / "deploy/grafana/voice-kiosk-fleet.json"


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Debian's promtool (never skipped: without it the tests fail and say why)."""
    try:
        path = find_promtool()
    except PromtoolUnavailable as exc:
        pytest.fail(f"promtool: {exc}")
    version = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                             timeout=30)
    if version.returncode != 0:
        pytest.fail(f"{path} --version failed: {version.stderr.strip()}")
    return path


@pytest.fixture(scope="session")
def kiosk_fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Sample]]:
    """kiosk id -> the samples of the metrics file the kiosk's own code wrote."""
    return write_fleet(tmp_path_factory.mktemp("textfiles"))


@pytest.fixture(scope="session")
def written_names(kiosk_fleet: dict[str, list[Sample]]) -> set[str]:
    """Every metric name the kiosk writes (as Prometheus stores it: counters with _total)."""
    return {s.name for samples in kiosk_fleet.values() for s in samples}


def run_promtool(promtool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *map(str, args)], capture_output=True, text=True,
                          timeout=120)

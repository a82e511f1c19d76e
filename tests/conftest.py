"""Fixtures for the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def state_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """systemd's StateDirectory= for every kiosk the tests build or start (the spoken
    prompts' cache): a folder of the test run, never the user's ~/.local/state."""
    path = str(tmp_path_factory.mktemp("state"))
    saved = os.environ.get("STATE_DIRECTORY")
    os.environ["STATE_DIRECTORY"] = path
    try:
        yield path
    finally:
        if saved is None:
            os.environ.pop("STATE_DIRECTORY", None)
        else:
            os.environ["STATE_DIRECTORY"] = saved

"""Shared setup of the distribution tests: scripts/ on sys.path, and the opt-in `hermetic` marker."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))


def pytest_configure(config):
    config.addinivalue_line("markers", "hermetic: builds a real conda package offline against the stand-in "
                                       "channel (minutes); runs only with `-m hermetic` or SAGEATTN_HERMETIC=1")


def pytest_collection_modifyitems(config, items):
    """The hermetic build is opt-in so that a plain `pytest tests` stays quick."""
    if "hermetic" in (config.getoption("-m") or "") or os.environ.get("SAGEATTN_HERMETIC") == "1":
        return
    skip = pytest.mark.skip(reason="opt-in: pytest tests/distribution -m hermetic (or SAGEATTN_HERMETIC=1)")
    for item in items:
        if "hermetic" in item.keywords:
            item.add_marker(skip)

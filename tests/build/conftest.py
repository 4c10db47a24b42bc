"""Fixtures for the build tests: setup.py loaded as a module (its main() does not run on import)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def setup_module():
    spec = importlib.util.spec_from_file_location("sageattn_setup_under_test", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bs(setup_module):
    return setup_module.bs

import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """GPU tests skip cleanly without CUDA so `pytest` works on any machine."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def seed():
    """A fresh seed per test run (printed on failure) so every run draws new inputs."""
    value = int(os.environ.get("SAGEATTN_TEST_SEED", torch.seed() % (2**31)))
    torch.manual_seed(value)
    return value

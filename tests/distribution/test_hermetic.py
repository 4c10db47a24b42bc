"""The hermetic end-to-end test: build one real variant offline with rattler-build against the stand-in
channel (scripts/buildtools/channel.py), run the recipe's tests, repackage the .conda as a wheel, install it
in a fresh venv next to its torch and import it.

CPU variant by default (SAGEATTN_SKIP_CUDA_BUILD: no nvcc, minutes); SAGEATTN_HERMETIC_CUDA=1 builds the
CUDA variant for one arch (SAGEATTN_HERMETIC_ARCH, default 8.9) against torch 2.14.1+cu130 instead.
"""

from __future__ import annotations

import os
import platform
import shutil
import time

import pytest

pytest.importorskip("rattler_build", reason='pip install -e ".[dist]"')
pytest.importorskip("rattler", reason='pip install -e ".[dist]"')

from buildtools import channel, conda, matrix, test, wheels  # noqa: E402
from wheel.wheelfile import WheelFile  # noqa: E402

pytestmark = [pytest.mark.hermetic, pytest.mark.slow]

CUDA = os.environ.get("SAGEATTN_HERMETIC_CUDA") == "1"
ARCH = os.environ.get("SAGEATTN_HERMETIC_ARCH", "8.9")
# The recipe's in-env pytest run, narrowed to one quick file (the full CPU suite runs in the package's CI).
RECIPE_TESTS = os.environ.get("SAGEATTN_RECIPE_TESTS", "tests/test_validation.py")


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64", reason="stand-ins are linux-64")
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs the system C++ compiler")
def test_build_offline_then_repackage_and_import(tmp_path, monkeypatch):
    timings = {}
    start = time.monotonic()
    standins = channel.build_channel(channel.CACHE / ("channel-cuda" if CUDA else "channel-cpu"), None, CUDA)
    timings["stand-in channel"] = time.monotonic() - start

    monkeypatch.setenv("SAGEATTN_RECIPE_TESTS", RECIPE_TESTS)
    if CUDA:
        monkeypatch.setenv("SAGEATTN_CUDA_ARCH_LIST", ARCH)
    (variant,) = matrix.render(platforms=("linux-64",), overrides=channel.hermetic_overrides(CUDA))
    start = time.monotonic()
    (package,) = conda.build([variant], [str(standins)], tmp_path / "conda", test=True)
    timings["rattler-build build + recipe tests"] = time.monotonic() - start
    assert package.name.startswith(f"sageattention-{variant.version}-{variant.build_string}")

    wheel = wheels.conda_to_wheel(package, tmp_path / "wheels")
    torch_version = channel.hermetic_overrides(CUDA)["pytorch"][0]
    assert wheel.name.startswith(f"sageattention-{variant.version}+{variant.cuda_tag}torch{torch_version}.")
    with WheelFile(wheel) as archive:  # reading every member checks it against RECORD's hash
        assert all(archive.read(name) is not None for name in archive.namelist())

    start = time.monotonic()
    offline = ("--no-index", f"--find-links={channel.default_wheelhouse(CUDA)}")
    report = test.test_wheel(wheel, pip_args=offline, tests=(RECIPE_TESTS,))
    timings["fresh venv: install, import, info, tests"] = time.monotonic() - start
    assert f"sageattention {variant.version}" in report
    if CUDA:
        assert "pure Python" not in report
    print("\n".join(f"{step}: {seconds:.0f}s" for step, seconds in timings.items()))

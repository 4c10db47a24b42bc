"""Build script. Without a usable CUDA toolchain (or with SAGEATTN_SKIP_CUDA_BUILD=1) it installs the
pure-Python package: the Triton kernels and the PyTorch reference still work."""

import os

from setuptools import setup


def _skip_cuda() -> bool:
    return os.environ.get("SAGEATTN_SKIP_CUDA_BUILD", "0") not in ("", "0", "false", "False")


setup()

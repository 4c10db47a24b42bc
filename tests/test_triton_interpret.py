"""Runs the `test_interpret_*` cases of test_triton_attention.py on CPU tensors under TRITON_INTERPRET=1.

The variable must be set before Triton compiles any kernel, so the cases run in a child pytest. They use fp16
only: Triton 3.9's interpreter mis-converts fp32 to bf16 (a 16x16 tl.dot on bf16 operands is off by 1e10)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
TESTS = Path(__file__).parent


def test_triton_kernels_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "interpret",
           str(TESTS / "test_triton_attention.py")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


"""Bad arguments to the compiled ops raise a RuntimeError that names the problem, and never crash the process.

Each case runs in its own interpreter: on the lent H100/H200 image, formatting an integer through std::ostream
inside an extension segfaults, so every TORCH_CHECK whose message held a number, a shape or a device used to
kill Python (csrc/common/check.h builds messages with std::to_string instead).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

gpu = pytest.mark.gpu

SETUP = """
import torch
from sageattention._ext import load
i8 = lambda *s: torch.zeros(*s, device="cuda", dtype=torch.int8)
f32 = lambda *s: torch.ones(*s, device="cuda")
h = lambda *s: torch.randn(*s, device="cuda", dtype=torch.half)
"""

# (module, call, text the error must contain)
CASES = [
    ("_C_quant", "m.seq_mean(h(1, 64, 64))", "must be [B, H, L, D], got 3 dims"),
    ("_C_quant", "m.quant_int8(h(1, 1, 64, 80), None, 32, 1)", "head dim must be 64 or 128 (pad it), got 80"),
    ("_C_quant", "m.quant_int8(h(1, 1, 64, 64), None, 7, 1)", "group_rows must be 16, 32 or 64, got 7"),
    ("_C_quant", "m.quant_int8(h(1, 1, 64, 64), f32(1, 2, 64), 32, 1)", "mean must be a contiguous fp32 [B, H, D]"),
    ("_C_quant", "m.quant_qkv(h(1, 2, 64, 64), h(1, 2, 64, 128), None, 32, 1, 1, True, False)",
     "q and k must share dtype, head dim, batch and device"),
    ("_C_quant", "m.quant_qkv(h(1, 2, 64, 64), h(1, 2, 64, 64), h(1, 2, 65, 64), 32, 1, 1, True, False)",
     "v must have k's shape [1, 2, 64, 64], dtype and device, got [1, 2, 65, 64]"),
    ("_C_quant", "m.quant_qkv(h(1, 2, 64, 64), h(1, 2, 64, 64), None, 64, 1, 1, True, False)",
     "q_group_rows must be 16 or 32, got 64"),
    ("_C_sm80", "m.attention(i8(1, 4, 64, 64), i8(1, 3, 64, 64), h(1, 3, 64, 64), f32(1, 4, 2), f32(1, 3, 1), 32, 1, "
     "1, 1.0, False, 0, 'fp32', False)", "query heads (4) must be a multiple of key heads (3)"),
    ("_C_sm80", "m.attention(i8(1, 4, 64, 64), i8(1, 4, 64, 64), h(1, 4, 64, 64), f32(1, 4, 5), f32(1, 4, 1), 32, 1, "
     "1, 1.0, False, 0, 'fp32', False)", "q_scale must have shape [1, 4, 2], got [1, 4, 5]"),
    ("_C_sm89", "m.attention(i8(1, 4, 64, 64), i8(1, 4, 64, 64), torch.zeros(1, 4, 64, 32, device='cuda', "
     "dtype=torch.float8_e4m3fn), f32(1, 4, 64), None, f32(1, 4, 2), f32(1, 4, 1), 32, 1, 1, 1.0, False, 0, 'fp32', "
     "448.0, False, False)", "vt must be [B, Hkv, D, 64], got [1, 4, 64, 32]"),
    ("_C_sm90", "t = i8(1, 1, 64, 64); m.forward(t, t, torch.zeros(1, 1, 64, 64, device='cuda', dtype=torch.uint8), "
     "f32(1, 1, 3), f32(1, 1, 4), f32(1, 1, 64), None, 1.0, h(1, 1, 64, 64), None, False, 0, True, True, True, True)",
     "q_scale has 3 groups, expected 32"),
]


@gpu
@pytest.mark.parametrize("module,call,expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_arguments_raise_instead_of_crashing(module, call, expected):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from sageattention._ext import ExtensionUnavailable, load

    try:
        load(module)
    except ExtensionUnavailable as exc:
        pytest.skip(str(exc))
    code = SETUP + f"m = load({module!r})\n" + call
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, f"exit code {r.returncode} (negative: killed by a signal)\n{r.stderr[-2000:]}"
    assert "RuntimeError" in r.stderr and expected in r.stderr, r.stderr[-2000:]

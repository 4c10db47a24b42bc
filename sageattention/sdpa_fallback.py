"""Exact attention through PyTorch's SDPA, for the shapes where the fastest SDPA kernel beats every
sageattention kernel on this GPU (dispatch.SDPA_CROSSOVER says where, measured)."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

# The builtin itself, not the torch.nn.functional attribute: patch_sdpa replaces that attribute with a
# router that may call sageattn, and sageattn must never call back into the router.
_SDPA = torch._C._nn.scaled_dot_product_attention
# cuDNN first: on the H100 it measured 1.6-1.9x faster than flash (benchmarks/NOTES.md); GQA, which cuDNN
# does not take, falls through to flash.
_PRIORITY = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg) -> tuple:
    """HND views in, (o, None) out; top-left causal only (the caller checks)."""
    gqa = q.shape[1] != k.shape[1]
    if torch.compiler.is_compiling():  # inductor picks its own SDPA kernel; the priority context is eager-only
        return _SDPA(q, k, v, is_causal=cfg.is_causal, scale=cfg.sm_scale, enable_gqa=gqa), None
    with sdpa_kernel(_PRIORITY, set_priority=True):
        return _SDPA(q, k, v, is_causal=cfg.is_causal, scale=cfg.sm_scale, enable_gqa=gqa), None

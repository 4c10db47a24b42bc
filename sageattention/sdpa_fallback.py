"""Exact attention through PyTorch's SDPA, for the shapes where the fastest SDPA kernel beats every
sageattention kernel on this GPU (dispatch.SDPA_CROSSOVER says where, measured)."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend

# The builtin itself, not the torch.nn.functional attribute: patch_sdpa replaces that attribute with a
# router that may call sageattn, and sageattn must never call back into the router.
_SDPA = torch._C._nn.scaled_dot_product_attention
# cuDNN first: on the H100 it measured 1.6-1.9x faster than flash (benchmarks/NOTES.md); GQA, which cuDNN
# does not take, falls through to flash.
_PRIORITY = [int(b) for b in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                              SDPBackend.MATH)]
# The priority order alone, set and restored around the call: the same order `sdpa_kernel(..., set_priority=True)`
# sets, without its re-enabling of backends the user switched off, and at a tenth of its host cost (~28 µs on a
# slow CPU, which at N=1K is as long as the kernel).
_get_order = getattr(torch._C, "_get_sdp_priority_order", None)
_set_order = getattr(torch._C, "_set_sdp_priority_order", None)
_orders: dict = {}


def _cudnn_first(previous: tuple) -> list:
    if previous not in _orders:
        _orders[previous] = _PRIORITY + [b for b in previous if b not in _PRIORITY]
    return _orders[previous]


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg) -> tuple:
    """HND views in, (o, None) out; top-left causal only (the caller checks)."""
    gqa = q.shape[1] != k.shape[1]
    if torch.compiler.is_compiling() or _get_order is None:  # inductor picks its own kernel; old torch its default
        return _SDPA(q, k, v, is_causal=cfg.is_causal, scale=cfg.sm_scale, enable_gqa=gqa), None
    previous = tuple(_get_order())
    _set_order(_cudnn_first(previous))
    try:
        return _SDPA(q, k, v, is_causal=cfg.is_causal, scale=cfg.sm_scale, enable_gqa=gqa), None
    finally:
        _set_order(list(previous))

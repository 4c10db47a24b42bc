"""Backend "sm90": TMA + wgmma INT8 Q·Kᵀ and FP8 e4m3 P·V for Hopper (sm_90a), module ``sageattention._C_sm90``.

Head dims 64 and 128; qk_quant_gran "per_thread" or "per_warp" with 16-row Q groups (each warp of a consumer
warpgroup owns 16 query rows); pv_accum_dtype "fp32+fp32" (each 128-key tile's P·V in its own fp32 accumulator,
added into the running one: Hopper's FP8 wgmma accumulates with fewer mantissa bits) or "fp32". Quantization is
the shared ``_C_quant`` ops (ops/quant.py): its V^T key order (V16_POSITION) is the one the kernel's P fragments
need, since wgmma's 8-bit A fragment has the same lane layout as the m16n8k32 mma.

Validated on H100 and H200 (tests/test_sm90_attention.py, compute-sanitizer, benchmarks/NOTES.md). ``sageattn`` picks it
on compute capability 9.0 where dispatch.SDPA_CROSSOVER says it beats SDPA.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from .._ext import ExtensionUnavailable, load
from ..config import AttentionConfig
from . import quant
from ._backend import direct_call

head_dims = (64, 128)
ACCUM_MODES = ("fp32+fp32", "fp32")
WARP_ROWS = 16  # Q scale group: one warp's rows of a 64-row consumer warpgroup
KEY_TILE = 128  # keys per online-softmax step (csrc/sm90/tile.cuh kBlockN): reference.attention(key_tile=...)
# reference.attention(row_sum=...) per accumulation: two-level kernels sum the e4m3 P on the tensor cores, beside
# P·V (attention_kernel.cuh kTensorRowSum); single level sums the fp32 p in registers.
ROW_SUM = {"fp32+fp32": "pv_operand", "fp32": "p"}
# Schedule and grid of sageattn's calls; "0" falls back to the simpler form of each (validation and A/B only).
PINGPONG = os.environ.get("SAGEATTN_SM90_PINGPONG", "1") != "0"
PERSISTENT = os.environ.get("SAGEATTN_SM90_PERSISTENT", "1") != "0"


def available(device: torch.device) -> Optional[str]:
    device = torch.device(device)
    if device.type != "cuda":
        return f"the sm90 kernel needs a CUDA device, got {device.type}"
    cc = tuple(torch.cuda.get_device_capability(device))
    if cc != (9, 0):
        return f"the sm90 kernel runs on compute capability 9.0 (sm_90a code), this GPU is {cc[0]}.{cc[1]}"
    try:
        load("_C_quant", device)
        load("_C_sm90", device)
    except ExtensionUnavailable as exc:
        return str(exc)
    return None


def run_kernel(
    qk: quant.QuantizedQK, vt: torch.Tensor, v_scale: torch.Tensor, v_mean: Optional[torch.Tensor], qk_scale: float,
    out: torch.Tensor, lse: Optional[torch.Tensor], causal: bool, causal_offset: int, accum: str,
    pingpong: Optional[bool] = None, persistent: Optional[bool] = None,
) -> None:
    """Writes o into `out` ([B, Hq, Lq, D] HND view, last dim contiguous) and the LSE without the smoothing term
    into `lse` ([B, Hq, Lq] fp32 contiguous) when given. Tests poison `out` and `lse` through this.
    pingpong=False runs each consumer warpgroup tile by tile, persistent=False launches one CTA per work tile
    (128 query rows at D=128, 192 at D=64) instead of one per SM (the simpler forms, for A/B and debugging)."""
    load("_C_sm90").forward(
        qk.q8, qk.k8, vt, qk.q_scale, qk.k_scale, v_scale, v_mean, qk_scale, out, lse, causal, causal_offset,
        qk.q_residues > 1, accum == "fp32+fp32", PINGPONG if pingpong is None else pingpong,
        PERSISTENT if persistent is None else persistent,
    )


def _attention(
    q8: torch.Tensor, k8: torch.Tensor, vt: torch.Tensor, v_scale: torch.Tensor, v_mean: Optional[torch.Tensor],
    q_scale: torch.Tensor, k_scale: torch.Tensor, per_thread: bool, qk_scale: float, causal: bool,
    causal_offset: int, accum: str, out_dtype: torch.dtype, return_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(o [B, Hq, Lq, D] in out_dtype, lse [B, Hq, Lq] fp32 without the smoothing term, or an empty [0])."""
    out = torch.empty(q8.shape, dtype=out_dtype, device=q8.device)
    lse = torch.empty(q8.shape[:3] if return_lse else (0,), dtype=torch.float32, device=q8.device)
    residues = (8, 4) if per_thread else (1, 1)
    qk = quant.QuantizedQK(q8, q_scale, k8, k_scale, None, WARP_ROWS, *residues)
    run_kernel(qk, vt, v_scale, v_mean, qk_scale, out, lse if return_lse else None, causal, causal_offset, accum)
    return out, lse


attention_op = torch.library.custom_op("sageattention::sm90_attention", _attention, mutates_args=())


@attention_op.register_fake
def _(q8, k8, vt, v_scale, v_mean, q_scale, k_scale, per_thread, qk_scale, causal, causal_offset, accum,
      out_dtype, return_lse):
    lse_shape = q8.shape[:3] if return_lse else (0,)
    return q8.new_empty(q8.shape, dtype=out_dtype), q8.new_empty(lse_shape, dtype=torch.float32)


def check_config(cfg: AttentionConfig) -> None:
    if cfg.pv_accum_dtype not in ACCUM_MODES:
        raise ValueError(f"the sm90 kernel takes pv_accum_dtype {', '.join(ACCUM_MODES)}; got {cfg.pv_accum_dtype!r}")
    if cfg.attn_mask is not None:
        raise ValueError("the sm90 kernel takes no attn_mask; use sageattn_qk_int8_pv_fp16_triton(..., attn_mask=...)")


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: AttentionConfig):
    check_config(cfg)
    direct = direct_call(q, k, v)
    qk, (vt, v_scale, v_mean) = quant.quantize_qkv(q, k, v, cfg, warp_rows=WARP_ROWS, direct=direct)
    o, lse = (_attention if direct else attention_op)(
        qk.q8, qk.k8, vt, v_scale, v_mean if cfg.smooth_v else None, qk.q_scale, qk.k_scale, qk.q_residues > 1,
        quant.qk_scale(cfg), cfg.is_causal, cfg.causal_offset(q.shape[2], k.shape[2]), cfg.pv_accum_dtype, q.dtype,
        cfg.return_lse,
    )
    return o, (quant.finish_lse(lse, q, qk.k_mean, cfg) if cfg.return_lse else None)

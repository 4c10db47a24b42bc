"""Backend "sm80": INT8 Q·Kᵀ (m16n8k32) and FP16/BF16 P·V (m16n8k16), module ``sageattention._C_sm80``.

Head dims 64 and 128. pv_accum_dtype "fp32", "fp16+fp32" or "fp16" (bf16 inputs accumulate in fp32).
smooth_v does not apply: P·V runs in the input's own precision (reference.py ignores it too)."""

from __future__ import annotations

from typing import Optional

import torch

from .._ext import load
from ..config import AttentionConfig
from . import quant
from ._backend import direct_call, unavailable

head_dims = (64, 128)
ACCUM_MODES = ("fp32", "fp16+fp32", "fp16")
# reference.attention(row_sum=...): the kernel sums the 16-bit P that P·V uses, on the tensor cores
# (csrc/sm80/value_fp16.cuh kTensorRowSums).
ROW_SUM = "pv_operand"


def available(device: torch.device) -> Optional[str]:
    return unavailable(torch.device(device), "_C_sm80", (8, 0), "the sm80 kernel")


def _attention(
    q8: torch.Tensor, k8: torch.Tensor, v: torch.Tensor, q_scale: torch.Tensor, k_scale: torch.Tensor,
    q_group_rows: int, q_residues: int, k_residues: int, qk_scale: float, causal: bool, causal_offset: int,
    accum: str, return_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(o [B, Hq, Lq, D] in v's dtype, lse [B, Hq, Lq] fp32 without the smoothing term, or an empty [0])."""
    o, lse = load("_C_sm80").attention(
        q8, k8, quant._rows_aligned(v), q_scale, k_scale, q_group_rows, q_residues, k_residues, qk_scale, causal,
        causal_offset, accum, return_lse,
    )
    return o, lse


attention_op = torch.library.custom_op("sageattention::sm80_attention", _attention, mutates_args=())


@attention_op.register_fake
def _(q8, k8, v, q_scale, k_scale, q_group_rows, q_residues, k_residues, qk_scale, causal, causal_offset, accum,
      return_lse):
    lse_shape = q8.shape[:3] if return_lse else (0,)
    return q8.new_empty(q8.shape, dtype=v.dtype), q8.new_empty(lse_shape, dtype=torch.float32)


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: AttentionConfig):
    if cfg.pv_accum_dtype not in ACCUM_MODES:
        raise ValueError(f"the sm80 kernel takes pv_accum_dtype {', '.join(ACCUM_MODES)}; got {cfg.pv_accum_dtype!r}")
    direct = direct_call(q, k, v)
    qk, _ = quant.quantize_qkv(q, k, None, cfg, direct=direct)
    o, lse = (_attention if direct else attention_op)(
        qk.q8, qk.k8, v, qk.q_scale, qk.k_scale, qk.q_group_rows, qk.q_residues, qk.k_residues, quant.qk_scale(cfg),
        cfg.is_causal, cfg.causal_offset(q.shape[2], k.shape[2]), cfg.pv_accum_dtype, cfg.return_lse,
    )
    return o, (quant.finish_lse(lse, q, qk.k_mean, cfg) if cfg.return_lse else None)

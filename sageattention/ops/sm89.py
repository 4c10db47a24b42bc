"""Backend "sm89": INT8 Q·Kᵀ (m16n8k32) and FP8 e4m3 P·V (m16n8k32), module ``sageattention._C_sm89``.

Head dims 64 and 128. pv_accum_dtype "fp32+fp16" (fp16 partial sum per 64-key tile; needs a build with
nvcc >= 12.8), "fp32+fp32" or "fp32"; P's FP8 scale per mode is reference.FP8_P_SCALE."""

from __future__ import annotations

from typing import Optional

import torch

from .._ext import load
from ..config import AttentionConfig
from ..reference import FP8_P_SCALE
from . import quant
from ._backend import direct_call, unavailable

head_dims = (64, 128)
ACCUM_MODES = ("fp32+fp32", "fp32+fp16", "fp32")
ROW_SUM = "p"  # reference.attention(row_sum=...): the kernel sums the fp32 p in registers


def available(device: torch.device) -> Optional[str]:
    reason = unavailable(torch.device(device), "_C_sm89", (8, 9), "the sm89 kernel")
    if reason is None and not load("_C_sm89").fp8_f16_accum_built():
        return "the sm89 kernel was built with nvcc < 12.8, which lacks the fp16-accumulate FP8 mma: rebuild with nvcc >= 12.8"
    return reason


def _attention(
    q8: torch.Tensor, k8: torch.Tensor, vt: torch.Tensor, v_scale: torch.Tensor, v_mean: Optional[torch.Tensor],
    q_scale: torch.Tensor, k_scale: torch.Tensor, q_group_rows: int, q_residues: int, k_residues: int,
    qk_scale: float, causal: bool, causal_offset: int, accum: str, p_scale: float, out_dtype: torch.dtype,
    return_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(o [B, Hq, Lq, D] in out_dtype, lse [B, Hq, Lq] fp32 without the smoothing term, or an empty [0])."""
    o, lse = load("_C_sm89").attention(
        q8, k8, vt, v_scale, v_mean, q_scale, k_scale, q_group_rows, q_residues, k_residues, qk_scale, causal,
        causal_offset, accum, p_scale, out_dtype == torch.bfloat16, return_lse,
    )
    return o, lse


attention_op = torch.library.custom_op("sageattention::sm89_attention", _attention, mutates_args=())


@attention_op.register_fake
def _(q8, k8, vt, v_scale, v_mean, q_scale, k_scale, q_group_rows, q_residues, k_residues, qk_scale, causal,
      causal_offset, accum, p_scale, out_dtype, return_lse):
    lse_shape = q8.shape[:3] if return_lse else (0,)
    return q8.new_empty(q8.shape, dtype=out_dtype), q8.new_empty(lse_shape, dtype=torch.float32)


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: AttentionConfig):
    if cfg.pv_accum_dtype not in ACCUM_MODES:
        raise ValueError(f"the sm89 kernel takes pv_accum_dtype {', '.join(ACCUM_MODES)}; got {cfg.pv_accum_dtype!r}")
    direct = direct_call(q, k, v)
    qk, (vt, v_scale, v_mean) = quant.quantize_qkv(q, k, v, cfg, direct=direct)
    o, lse = (_attention if direct else attention_op)(
        qk.q8, qk.k8, vt, v_scale, v_mean if cfg.smooth_v else None, qk.q_scale, qk.k_scale, qk.q_group_rows,
        qk.q_residues, qk.k_residues, quant.qk_scale(cfg), cfg.is_causal, cfg.causal_offset(q.shape[2], k.shape[2]),
        cfg.pv_accum_dtype, FP8_P_SCALE[cfg.pv_accum_dtype], q.dtype, cfg.return_lse,
    )
    return o, (quant.finish_lse(lse, q, qk.k_mean, cfg) if cfg.return_lse else None)

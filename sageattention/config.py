"""The settings one attention call runs with: the contract between api.py and every backend.

api.py validates the user's arguments once and builds an `AttentionConfig`; backends (reference, Triton,
CUDA modules) read only this object, never the raw keyword arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

LOG2E = 1.4426950408889634  # log2(e): softmax runs in base 2 with this folded into Q's scale
LN2 = 0.6931471805599453

TENSOR_LAYOUTS = ("HND", "NHD")
CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")
QK_QUANT_GRANS = ("per_block", "per_warp", "per_thread")
# Accumulation modes per P·V precision; the first is the default of the family.
PV_ACCUM_DTYPES = {
    "fp16": ("fp32", "fp16+fp32", "fp16"),
    "fp8": ("fp32+fp32", "fp32+fp16", "fp32"),
}
QUANTIZATION_BACKENDS = ("triton", "cuda")
SERVED_DTYPES = (torch.float16, torch.bfloat16)
MAX_HEAD_DIM = 256


@dataclass(frozen=True)
class AttentionConfig:
    """Validated settings of one call. Tensors travel separately, always as HND views ([B, H, L, D])."""

    sm_scale: float
    is_causal: bool = False
    causal_alignment: str = "top_left"  # "top_left" = SDPA's is_causal; "bottom_right" = FlashAttention's
    pv: str = "fp16"  # precision of P·V: "fp16" (P in the input's 16-bit type) or "fp8" (e4m3)
    pv_accum_dtype: str = "fp32"
    qk_quant_gran: str = "per_block"
    smooth_k: bool = True
    smooth_v: bool = False
    return_lse: bool = False
    quantization_backend: str = "triton"
    attn_mask: Optional[torch.Tensor] = None  # bool (True keeps) or additive float, broadcastable to [B,Hq,Lq,Lk]
    head_dim: int = 0  # the caller's head dim, before any padding

    def causal_offset(self, len_q: int, len_k: int) -> int:
        """Query i sees key j iff j <= i + offset."""
        return len_k - len_q if self.causal_alignment == "bottom_right" else 0


def default_sm_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)

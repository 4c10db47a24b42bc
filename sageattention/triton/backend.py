"""Dispatch entry points of the Triton backend (see sageattention/dispatch.py for the contract)."""

from __future__ import annotations

import functools
from typing import Optional

import torch

from ..config import LOG2E, AttentionConfig

HEAD_DIMS = (64, 128, 256)
MIN_CAPABILITY = (8, 0)  # tl.dot on INT8 needs the sm80 mma
FP8_CAPABILITY = (8, 9)


@functools.lru_cache(maxsize=None)
def _reason(device_type: str, index: Optional[int]) -> Optional[str]:
    try:
        import triton  # noqa: F401

        from . import ops  # noqa: F401  (registers the torch.library ops)
    except ImportError as exc:
        return f"triton is not installed ({exc})"
    if device_type != "cuda":
        return f"the Triton backend needs a CUDA tensor (got {device_type})"
    cap = torch.cuda.get_device_capability(index)
    if cap < MIN_CAPABILITY:
        return f"Triton INT8 attention needs sm_80 or newer (this GPU is sm_{cap[0]}{cap[1]})"
    return None


def available(device: torch.device) -> Optional[str]:
    """None when the Triton kernels can run on `device`, else a one-line reason."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _reason(device.type, device.index)


def _check(q: torch.Tensor, cfg: AttentionConfig) -> None:
    d = q.shape[-1]
    if d not in HEAD_DIMS:
        raise ValueError(f"the Triton kernel serves head dims {HEAD_DIMS}, got {d}; call it through sageattn(), which pads")
    if cfg.qk_quant_gran != "per_block":
        raise ValueError(f"the Triton kernel quantizes per_block, got qk_quant_gran={cfg.qk_quant_gran!r}")
    if cfg.pv_accum_dtype == "fp16":
        raise ValueError("the Triton kernel accumulates P·V in fp32; use pv_accum_dtype='fp32' or 'fp16+fp32'")
    if cfg.pv == "fp8" and torch.cuda.get_device_capability(q.device) < FP8_CAPABILITY:
        raise ValueError("FP8 P·V needs sm_89 or newer; use pv='fp16' on this GPU")


def _run(q, k, v, cfg, cu_q, cu_k, max_q, max_k, mask):
    from . import ops

    _check(q, cfg)
    # torch.compile traces the registered ops; eager calls on plain tensors launch the kernels directly
    quant_qk, quant_v_fp8, attention = ops.calls(type(q) is torch.Tensor and not torch.compiler.is_compiling())
    q8, qs, k8, ks, km = quant_qk(q, k, cu_q, cu_k, max_q, max_k, cfg.sm_scale * LOG2E, cfg.smooth_k)
    v_scale = v_mean = None
    if cfg.pv == "fp8":
        v, v_scale, v_mean = quant_v_fp8(v, cu_k, max_k, cfg.smooth_v)
    o, lse = attention(
        q8, qs, k8, ks, v, q, km, v_scale, v_mean, mask, cu_q, cu_k, max_q, max_k, cfg.sm_scale, cfg.is_causal,
        cfg.causal_alignment == "bottom_right", cfg.return_lse, cfg.smooth_k, cfg.smooth_v, cfg.pv_accum_dtype,
    )
    return o, (lse if cfg.return_lse else None)


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: AttentionConfig):
    """q/k/v: HND views [B, H, L, D]. Returns (o [B, Hq, Lq, D] in q's memory layout, lse [B, Hq, Lq] | None)."""
    return _run(q, k, v, cfg, None, None, q.shape[2], k.shape[2], cfg.attn_mask)


def forward_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, cfg: AttentionConfig):
    """Packed q [total_q, Hq, D], k/v [total_k, Hkv, D]. Returns (o [total_q, Hq, D], lse [Hq, total_q] | None)."""
    if cfg.attn_mask is not None:
        raise ValueError("varlen attention takes no attn_mask; pad the batch and call sageattn_qk_int8_pv_fp16_triton")
    return _run(q, k, v, cfg, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, None)

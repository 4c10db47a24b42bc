"""Public functions: validate -> build one AttentionConfig -> run one backend -> restore the caller's layout.

Signatures follow upstream SageAttention 2.2 so existing callers work unchanged, with two differences:
unknown keyword arguments raise TypeError instead of being ignored, and ``causal_alignment`` chooses between
SDPA's top-left causal mask (default) and FlashAttention's bottom-right one (KV-cache decoding).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F

from . import autograd, reference
from .config import AttentionConfig
from . import sdpa_fallback
from .dispatch import BACKENDS, Backend, capability_of, load, padded_head_dim, sdpa_wins, select, unavailable_reason
from .validation import check_qkv, check_varlen, make_config, reject_unknown_kwargs


class KernelUnavailableError(RuntimeError):
    """A function that names one kernel was called where that kernel cannot run."""


def _is_empty(q: torch.Tensor, k: torch.Tensor) -> bool:
    return q.numel() == 0 or k.shape[2] == 0


def _pad_head_dim(x: torch.Tensor, target: int) -> torch.Tensor:
    # Zero channels leave Q·Kᵀ and the amax of every row unchanged; V's extra outputs are sliced off.
    return F.pad(x, (0, target - x.shape[-1]))


def _kernel_head_dim(backend: Backend, device: torch.device, head_dim: int) -> int:
    """The head dim `backend` runs for `head_dim` on `device`; raises KernelUnavailableError naming why not."""
    target = padded_head_dim(backend, head_dim)
    if target is None:
        raise KernelUnavailableError(
            f"the {backend.name} kernel serves head dims up to {backend.head_dims[-1]}, got {head_dim}; "
            f"call sageattn(), which routes head dim {head_dim} to a kernel that serves it"
        )
    reason = unavailable_reason(backend.name, device)
    if reason is not None:
        raise KernelUnavailableError(f"{reason}; sageattn() picks a kernel this GPU has")
    return target


def _run_backend(backend: Backend, q, k, v, cfg: AttentionConfig):
    """q/k/v HND views; returns (o HND, lse). Inputs that require grad get the exact-attention gradient."""
    if autograd.needs_grad(q, k, v):
        return autograd.attention_with_exact_grad(functools.partial(_forward_backend, backend, cfg=cfg), q, k, v, cfg)
    return _forward_backend(backend, q, k, v, cfg)


def _forward_backend(backend: Backend, q, k, v, cfg: AttentionConfig):
    if backend.name == "reference" or q.device.type != "cuda" or _is_empty(q, k):
        return reference.attention(q, k, v, cfg)
    d = q.shape[-1]
    target = _kernel_head_dim(backend, q.device, d)
    if target != d:
        q, k, v = (_pad_head_dim(x, target) for x in (q, k, v))
    o, lse = load(backend.name).forward(q, k, v, cfg)
    return o[..., :d], lse


def _sdpa_serves(q, k, is_causal, causal_alignment, return_lse) -> bool:
    """sageattn hands the call to SDPA where SDPA measured faster on this GPU (dispatch.SDPA_CROSSOVER) and SDPA
    can compute the same thing: no LSE requested, and causal only with SDPA's top-left alignment."""
    if q.device.type != "cuda" or return_lse or _is_empty(q, k):
        return False
    lq, lk = q.shape[2], k.shape[2]
    if is_causal and causal_alignment != "top_left" and lq != lk:
        return False
    return sdpa_wins(capability_of(q.device), q.shape[-1], lk, is_causal)


def _finish(o: torch.Tensor, lse: Optional[torch.Tensor], tensor_layout: str, return_lse: bool):
    if tensor_layout == "NHD":
        o = o.transpose(1, 2)
    return (o, lse) if return_lse else o


def _named_kernel(func, backend_name, q, k, v, tensor_layout, kwargs, **settings):
    reject_unknown_kwargs(func, kwargs)
    qh, kh, vh = check_qkv(q, k, v, tensor_layout)
    backend = BACKENDS[backend_name]
    cfg = make_config(qh, kh, pv=backend.pv, **settings)
    o, lse = _run_backend(backend, qh, kh, vh, cfg)
    return _finish(o, lse, tensor_layout, cfg.return_lse)


def sageattn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tensor_layout: str = "HND",
    is_causal: bool = False,
    sm_scale: Optional[float] = None,
    return_lse: bool = False,
    *,
    causal_alignment: str = "top_left",
    smooth_k: bool = True,
    backend: str = "auto",
    **kwargs,
):
    """Quantized attention with the best kernel for this GPU (see ``dispatch.DISPATCH_TABLE``).

    q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D] for "HND" ([B, L, H, D] for "NHD"), fp16 or bf16, Hq % Hkv == 0,
    1 <= D <= 256. Returns o like q, and with return_lse the natural-log LSE [B, Hq, Lq] fp32.
    ``backend`` forces one entry of ``dispatch.BACKENDS`` (for tests and benchmarks).
    """
    hint = ""
    if "attn_mask" in kwargs:
        hint = "; sageattn takes no mask: use sageattn_qk_int8_pv_fp16_triton(..., attn_mask=...)"
    reject_unknown_kwargs("sageattn", kwargs, hint)
    qh, kh, vh = check_qkv(q, k, v, tensor_layout)
    if backend == "auto" and _sdpa_serves(qh, kh, is_causal, causal_alignment, return_lse):
        cfg = make_config(qh, kh, pv="fp16", is_causal=is_causal, causal_alignment=causal_alignment, sm_scale=sm_scale)
        o, lse = sdpa_fallback.forward(qh, kh, vh, cfg)
        return _finish(o, lse, tensor_layout, return_lse)
    if backend == "auto":
        chosen, _ = select(qh.device, qh.shape[-1])
    elif backend in BACKENDS:
        chosen = BACKENDS[backend]
    else:
        raise ValueError(f"backend={backend!r} is not known; use 'auto' or one of {', '.join(BACKENDS)}")
    cfg = make_config(
        qh, kh, pv=chosen.pv, is_causal=is_causal, causal_alignment=causal_alignment, sm_scale=sm_scale,
        pv_accum_dtype=chosen.pv_accum_dtype, qk_quant_gran=chosen.qk_quant_gran, smooth_k=smooth_k,
        return_lse=return_lse,
    )
    o, lse = _run_backend(chosen, qh, kh, vh, cfg)
    return _finish(o, lse, tensor_layout, return_lse)


def sageattn_qk_int8_pv_fp16_triton(
    q, k, v, tensor_layout="HND", quantization_backend="triton", is_causal=False, attn_mask=None,
    sm_scale=None, smooth_k=True, return_lse=False, *, causal_alignment="top_left", **kwargs,
):
    """INT8 Q·Kᵀ (per-block scales), FP16 P·V with fp32 accumulation, through Triton. Takes ``attn_mask``
    (bool, True keeps, or additive float, broadcastable to [B, Hq, Lq, Lk])."""
    return _named_kernel(
        "sageattn_qk_int8_pv_fp16_triton", "triton", q, k, v, tensor_layout, kwargs,
        quantization_backend=quantization_backend, is_causal=is_causal, attn_mask=attn_mask, sm_scale=sm_scale,
        smooth_k=smooth_k, return_lse=return_lse, causal_alignment=causal_alignment, qk_quant_gran="per_block",
        allowed_grans=("per_block",),
    )


def sageattn_qk_int8_pv_fp16_cuda(
    q, k, v, tensor_layout="HND", is_causal=False, qk_quant_gran="per_thread", sm_scale=None,
    pv_accum_dtype="fp32", smooth_k=True, smooth_v=False, return_lse=False, *, causal_alignment="top_left",
    **kwargs,
):
    """INT8 Q·Kᵀ, FP16 P·V (mma, sm80+); pv_accum_dtype "fp32", "fp16+fp32" or "fp16"."""
    return _named_kernel(
        "sageattn_qk_int8_pv_fp16_cuda", "sm80", q, k, v, tensor_layout, kwargs, is_causal=is_causal,
        qk_quant_gran=qk_quant_gran, sm_scale=sm_scale, pv_accum_dtype=pv_accum_dtype, smooth_k=smooth_k,
        smooth_v=smooth_v, return_lse=return_lse, causal_alignment=causal_alignment,
        allowed_grans=("per_warp", "per_thread"),
    )


def sageattn_qk_int8_pv_fp8_cuda(
    q, k, v, tensor_layout="HND", is_causal=False, qk_quant_gran="per_thread", sm_scale=None,
    pv_accum_dtype="fp32+fp16", smooth_k=True, smooth_v=False, return_lse=False, *,
    causal_alignment="top_left", **kwargs,
):
    """INT8 Q·Kᵀ, FP8 e4m3 P·V (mma, sm89+); pv_accum_dtype "fp32+fp16", "fp32+fp32" or "fp32"."""
    return _named_kernel(
        "sageattn_qk_int8_pv_fp8_cuda", "sm89", q, k, v, tensor_layout, kwargs, is_causal=is_causal,
        qk_quant_gran=qk_quant_gran, sm_scale=sm_scale, pv_accum_dtype=pv_accum_dtype, smooth_k=smooth_k,
        smooth_v=smooth_v, return_lse=return_lse, causal_alignment=causal_alignment,
        allowed_grans=("per_warp", "per_thread"),
    )


def sageattn_qk_int8_pv_fp8_cuda_sm90(
    q, k, v, tensor_layout="HND", is_causal=False, qk_quant_gran="per_thread", sm_scale=None,
    pv_accum_dtype="fp32+fp32", smooth_k=True, return_lse=False, *, causal_alignment="top_left", **kwargs,
):
    """INT8 Q·Kᵀ, FP8 e4m3 P·V with TMA and wgmma (sm90a); pv_accum_dtype "fp32+fp32" or "fp32"."""
    return _named_kernel(
        "sageattn_qk_int8_pv_fp8_cuda_sm90", "sm90", q, k, v, tensor_layout, kwargs, is_causal=is_causal,
        qk_quant_gran=qk_quant_gran, sm_scale=sm_scale, pv_accum_dtype=pv_accum_dtype, smooth_k=smooth_k,
        return_lse=return_lse, causal_alignment=causal_alignment, allowed_grans=("per_warp", "per_thread"),
        allowed_accums=("fp32+fp32", "fp32"),  # wgmma accumulates only in fp32
    )


def sageattn_varlen(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal=False, sm_scale=None,
    smooth_k=True, return_lse=False, *, causal_alignment="top_left", **kwargs,
):
    """Packed sequences: q [total_q, Hq, D], k/v [total_k, Hkv, D], cu_seqlens int32 [batch + 1].
    Returns o [total_q, Hq, D] and with return_lse the LSE [Hq, total_q] fp32."""
    reject_unknown_kwargs("sageattn_varlen", kwargs)
    check_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, is_causal, causal_alignment)
    qh, kh = q.transpose(0, 1)[None], k.transpose(0, 1)[None]
    cfg = make_config(
        qh, kh, pv="fp16", is_causal=is_causal, causal_alignment=causal_alignment, sm_scale=sm_scale,
        smooth_k=smooth_k, return_lse=return_lse, qk_quant_gran="per_block",
    )
    backend = BACKENDS["triton"]
    if q.device.type == "cuda" and q.numel() and k.numel():
        d = q.shape[-1]
        target = padded_head_dim(backend, d)
        if unavailable_reason("triton", q.device) is None and target is not None:
            if target != d:
                q, k, v = (_pad_head_dim(x, target) for x in (q, k, v))
            o, lse = load("triton").forward_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, cfg)
            o = o[..., :d]
            return (o, lse) if return_lse else o
    o, lse = reference.varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, cfg)
    return (o, lse) if return_lse else o

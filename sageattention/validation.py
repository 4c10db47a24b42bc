"""Input checks shared by every public function. Each failure is one line that names the problem and the fix.

The full list of rejected inputs and the exception each raises is in docs/validation.md and is exercised
by tests/test_validation.py.
"""

from __future__ import annotations

from typing import Optional

import torch

from .config import (
    CAUSAL_ALIGNMENTS,
    MAX_HEAD_DIM,
    PV_ACCUM_DTYPES,
    QK_QUANT_GRANS,
    QUANTIZATION_BACKENDS,
    SERVED_DTYPES,
    TENSOR_LAYOUTS,
    AttentionConfig,
    default_sm_scale,
)

_DTYPES_TEXT = "torch.float16 or torch.bfloat16"


def reject_unknown_kwargs(func: str, kwargs: dict, hint: str = "") -> None:
    """Upstream swallowed unknown keywords silently; a typo or an attn_mask must not be ignored."""
    if kwargs:
        names = ", ".join(sorted(kwargs))
        raise TypeError(f"{func}() got unexpected keyword argument(s) {names}{hint}")


def _check_tensor(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in SERVED_DTYPES:
        if x.dtype == torch.float32 or x.dtype == torch.float64:
            raise TypeError(f"{name} is {x.dtype}, which is not served; cast to {_DTYPES_TEXT} (e.g. {name}.half())")
        raise TypeError(f"{name} has dtype {x.dtype}; attention inputs must be {_DTYPES_TEXT}")


def check_dtypes_devices(tensors: dict) -> None:
    for name, x in tensors.items():
        _check_tensor(name, x)
    first_name, first = next(iter(tensors.items()))
    for name, x in tensors.items():
        if x.dtype != first.dtype:
            raise TypeError(f"{name} is {x.dtype} but {first_name} is {first.dtype}; pass q, k and v in one dtype")
        if x.device != first.device:
            raise ValueError(f"{name} is on {x.device} but {first_name} is on {first.device}; move them to one device")


def check_qkv(q, k, v, tensor_layout: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validates dense inputs and returns HND views ([B, H, L, D], no copy)."""
    check_dtypes_devices({"q": q, "k": k, "v": v})
    if tensor_layout not in TENSOR_LAYOUTS:
        raise ValueError(f"tensor_layout must be 'HND' ([B, H, L, D]) or 'NHD' ([B, L, H, D]), got {tensor_layout!r}")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 4:
            want = "[B, H, L, D]" if tensor_layout == "HND" else "[B, L, H, D]"
            raise ValueError(f"{name} must be 4-D {want} for tensor_layout={tensor_layout!r}, got shape {tuple(x.shape)}")
    if tensor_layout == "NHD":
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    check_hnd_shapes(q, k, v, tensor_layout)
    return q, k, v


def check_hnd_shapes(q, k, v, tensor_layout: str = "HND") -> None:
    b, hq, _, d = q.shape
    if k.shape[0] != b or v.shape[0] != b:
        raise ValueError(f"batch sizes differ: q {b}, k {k.shape[0]}, v {v.shape[0]}; pass one batch size")
    if k.shape != v.shape:
        raise ValueError(
            f"k and v shapes differ ({tuple(k.shape)} vs {tuple(v.shape)} as HND); they need the same heads, "
            f"length and head dim (check tensor_layout={tensor_layout!r})"
        )
    check_head_dim(d, k.shape[3])
    check_heads(hq, k.shape[1], tensor_layout)


def check_head_dim(d_q: int, d_k: int) -> None:
    if d_q != d_k:
        raise ValueError(f"q has head dim {d_q} but k/v have {d_k}; they must match (check tensor_layout)")
    if d_q < 1 or d_q > MAX_HEAD_DIM:
        raise ValueError(f"head dim {d_q} is not served; sageattention serves head dims 1 to {MAX_HEAD_DIM}")


def check_heads(hq: int, hkv: int, tensor_layout: str = "HND") -> None:
    if hkv == 0 and hq == 0:
        return
    if hkv == 0 or hq % hkv != 0:
        raise ValueError(
            f"q has {hq} heads and k/v have {hkv}; GQA needs q heads to be a multiple of k/v heads "
            f"(check tensor_layout={tensor_layout!r})"
        )


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; use one of {', '.join(map(repr, allowed))}")


def check_causal(is_causal: bool, alignment: str, len_q: int, len_k: int) -> None:
    check_choice("causal_alignment", alignment, CAUSAL_ALIGNMENTS)
    if is_causal and alignment == "bottom_right" and len_q > len_k and len_k > 0:
        raise ValueError(
            f"bottom-right causal with {len_q} queries and {len_k} keys leaves the first {len_q - len_k} queries "
            f"no key; use causal_alignment='top_left' or at least as many keys as queries"
        )


def check_sm_scale(sm_scale, head_dim: int) -> float:
    if sm_scale is None:
        return default_sm_scale(head_dim)
    try:
        value = float(sm_scale)
    except (TypeError, ValueError):
        raise TypeError(f"sm_scale must be a number, got {type(sm_scale).__name__}") from None
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"sm_scale must be a positive finite number, got {sm_scale!r} (None means head_dim**-0.5)")
    return value


def check_mask(attn_mask, b: int, hq: int, lq: int, lk: int, device) -> Optional[torch.Tensor]:
    if attn_mask is None:
        return None
    if not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if attn_mask.device != device:
        raise ValueError(f"attn_mask is on {attn_mask.device} but q is on {device}; move it to q's device")
    if not (attn_mask.dtype == torch.bool or attn_mask.is_floating_point()):
        raise TypeError(f"attn_mask must be bool (True keeps) or floating point (added to logits), got {attn_mask.dtype}")
    if attn_mask.dim() > 4:
        raise ValueError(f"attn_mask must broadcast to [B, H, Lq, Lk] = {[b, hq, lq, lk]}, got {tuple(attn_mask.shape)}")
    try:
        ok = torch.broadcast_shapes(tuple(attn_mask.shape), (b, hq, lq, lk)) == (b, hq, lq, lk)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"attn_mask must broadcast to [B, H, Lq, Lk] = {[b, hq, lq, lk]}, got {tuple(attn_mask.shape)}")
    return attn_mask


def make_config(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    pv: str,
    is_causal: bool = False,
    causal_alignment: str = "top_left",
    sm_scale=None,
    pv_accum_dtype: Optional[str] = None,
    qk_quant_gran: str = "per_block",
    smooth_k: bool = True,
    smooth_v: bool = False,
    return_lse: bool = False,
    quantization_backend: str = "triton",
    attn_mask=None,
    allowed_grans=QK_QUANT_GRANS,
    allowed_accums=None,
) -> AttentionConfig:
    """q, k are HND views that passed check_qkv."""
    b, hq, lq, d = q.shape
    lk = k.shape[2]
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be True or False, got {is_causal!r}")
    check_causal(is_causal, causal_alignment, lq, lk)
    check_choice("qk_quant_gran", qk_quant_gran, allowed_grans)
    accum_choices = allowed_accums or PV_ACCUM_DTYPES[pv]
    pv_accum_dtype = accum_choices[0] if pv_accum_dtype is None else pv_accum_dtype
    check_choice("pv_accum_dtype", pv_accum_dtype, accum_choices)
    check_choice("quantization_backend", quantization_backend, QUANTIZATION_BACKENDS)
    return AttentionConfig(
        sm_scale=check_sm_scale(sm_scale, d),
        is_causal=is_causal,
        causal_alignment=causal_alignment,
        pv=pv,
        pv_accum_dtype=pv_accum_dtype,
        qk_quant_gran=qk_quant_gran,
        smooth_k=bool(smooth_k),
        smooth_v=bool(smooth_v),
        return_lse=bool(return_lse),
        quantization_backend=quantization_backend,
        attn_mask=check_mask(attn_mask, b, hq, lq, lk, q.device),
        head_dim=d,
    )


def check_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                 is_causal: bool = False, causal_alignment: str = "top_left") -> None:
    """Packed layout: q [total_q, Hq, D], k/v [total_k, Hkv, D], cu_seqlens int32 [batch + 1]."""
    check_dtypes_devices({"q": q, "k": k, "v": v})
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 3:
            raise ValueError(f"varlen {name} must be 3-D [total_tokens, heads, head_dim], got shape {tuple(x.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"k and v shapes differ ({tuple(k.shape)} vs {tuple(v.shape)}); they need the same tokens, heads and head dim")
    check_head_dim(q.shape[2], k.shape[2])
    check_heads(q.shape[1], k.shape[1], "NHD")
    seq_lengths = {}  # one read of each cu_seqlens (a device sync on GPU) serves every check below
    for name, cu, total, max_len in (
        ("cu_seqlens_q", cu_seqlens_q, q.shape[0], max_seqlen_q),
        ("cu_seqlens_k", cu_seqlens_k, k.shape[0], max_seqlen_k),
    ):
        if not isinstance(cu, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of int32, got {type(cu).__name__}")
        if cu.dtype != torch.int32:
            raise TypeError(f"{name} must be torch.int32, got {cu.dtype}; pass {name}.int()")
        if cu.dim() != 1 or cu.numel() < 1:
            raise ValueError(f"{name} must be 1-D [batch + 1] starting at 0, got shape {tuple(cu.shape)}")
        if cu.device != q.device:
            raise ValueError(f"{name} is on {cu.device} but q is on {q.device}; move it to q's device")
        values = cu.tolist()
        if values[0] != 0:
            raise ValueError(f"{name} must start at 0, got {values[0]}")
        lengths = [b - a for a, b in zip(values, values[1:])]
        if any(n < 0 for n in lengths):
            raise ValueError(f"{name} must be non-decreasing (cumulative sequence lengths), got {values}")
        if values[-1] != total:
            raise ValueError(f"{name} ends at {values[-1]} but the packed tensor has {total} tokens; they must match")
        if not isinstance(max_len, int) or isinstance(max_len, bool):
            raise TypeError(f"max_seqlen for {name} must be an int, got {type(max_len).__name__}")
        if lengths and max_len < max(lengths):
            raise ValueError(f"max_seqlen {max_len} is below the longest sequence in {name} ({max(lengths)}); pass the true maximum")
        seq_lengths[name] = lengths
    if cu_seqlens_q.numel() != cu_seqlens_k.numel():
        raise ValueError(
            f"cu_seqlens_q has {cu_seqlens_q.numel() - 1} sequences and cu_seqlens_k {cu_seqlens_k.numel() - 1}; they must match"
        )
    if is_causal:
        for len_q, len_k in zip(seq_lengths["cu_seqlens_q"], seq_lengths["cu_seqlens_k"]):
            check_causal(True, causal_alignment, len_q, len_k)

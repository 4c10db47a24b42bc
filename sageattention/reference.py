"""The quantized attention algorithm in plain PyTorch: the executable specification every kernel matches.

Runs on CPU and GPU. Tensors are HND views ``[B, H, L, D]`` (any strides); ``cfg`` is the validated
:class:`~sageattention.config.AttentionConfig`. Steps, in the order kernels perform them:

1. K smoothing: ``K' = K - mean_seq(K)`` (fp32) when ``cfg.smooth_k``; softmax is unchanged by it.
2. Q, K' to INT8 with the granularity of ``cfg.qk_quant_gran`` (``quant/spec.py``); Q's scale absorbs
   ``sm_scale * log2(e)`` so the logits come out in base 2: ``S = (Q8 · K8ᵀ) * sq * sk``.
3. Online softmax over key tiles of ``key_tile`` keys (64, the kernels' tile): running max ``m``,
   ``p = exp2(S - m)``, row sum ``l`` of the fp32 ``p`` (``row_sum="p"``), or with ``row_sum="pv_operand"`` of P
   as step 4 rounds it for P·V, divided by its scale (the sm90 kernel's two-level mode sums P on the tensor
   cores, beside P·V: numerator and denominator then weigh every key alike).
4. P·V per tile:
   * ``pv="fp16"``: P rounded to V's 16-bit type, products summed in fp32; ``pv_accum_dtype`` "fp32" keeps
     the accumulator fp32, "fp16+fp32" rounds each tile's partial sum to fp16 before adding it to fp32, "fp16"
     keeps the whole accumulator in fp16 (bf16 inputs: bf16 mma accumulates only in fp32, so both fp16 modes
     behave as "fp32").
   * ``pv="fp8"``: V as e4m3 per channel (``quant/spec.py``); P multiplied by ``FP8_P_SCALE[mode]`` and rounded
     to e4m3; each tile's partial sum is fp32 ("fp32", "fp32+fp32") or rounded to fp16 ("fp32+fp16", where the
     P scale is 1 so a 64-key partial sum cannot exceed fp16's range), then added into the fp32 accumulator.
5. ``O = acc / l`` (times ``scale_v / p_scale`` for fp8, plus ``mean_seq(V)`` with smooth_v), in the input
   dtype. Rows that see no key (every key masked) give zeros and LSE ``-inf``, never NaN.
6. LSE (natural log, fp32): ``(m + log2 l) * ln 2 + sm_scale * q · mean_seq(K)`` (the smoothing correction).

Memory stays bounded: queries are processed in chunks so the fp32 score tile never exceeds ~64 MB.
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch

from .config import LN2, LOG2E, AttentionConfig
from .quant.spec import expand_scale, k_grouping, q_grouping, quantize_int8, quantize_v_fp8, seq_mean

FP8_P_SCALE = {"fp32": 448.0, "fp32+fp32": 448.0, "fp32+fp16": 1.0}
KEY_TILE = 64
_SCORE_BUDGET = 16 * 1024 * 1024  # fp32 elements per score tile chunk (64 MB)


@contextlib.contextmanager
def _exact_fp32_matmul():
    """Integer-valued fp32 matmuls must stay exact: TF32 would round the INT8 products."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def _mask_for(attn_mask: Optional[torch.Tensor], b: int, hkv: int, g: int, lq: int, lk: int):
    """Broadcast a [.., Lq, Lk]-broadcastable mask to a 5-D [B, Hkv, g, Lq, Lk] view (no copy)."""
    if attn_mask is None:
        return None
    m = attn_mask
    while m.dim() < 4:
        m = m.unsqueeze(0)
    return m.expand(b, hkv * g, lq, lk).unflatten(1, (hkv, g))


def _apply_mask(s, mask_tile, causal_limit, j0):
    """Sets masked logits to -inf. causal_limit[i] = last visible key of row i (or None)."""
    if mask_tile is not None:
        if mask_tile.dtype == torch.bool:
            s = s.masked_fill(~mask_tile, float("-inf"))
        else:
            s = s + mask_tile.float() * LOG2E
    if causal_limit is not None:
        cols = torch.arange(j0, j0 + s.shape[-1], device=s.device)
        s = s.masked_fill(cols[None, :] > causal_limit[:, None], float("-inf"))
    return s


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cfg: AttentionConfig,
    *,
    key_tile: int = KEY_TILE,
    warp_rows: int = 32,
    row_sum: str = "p",
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Quantized attention. Returns ``(o [B, Hq, Lq, Dv] in q.dtype, lse [B, Hq, Lq] fp32 or None)``."""
    if row_sum not in ("p", "pv_operand"):
        raise ValueError(f"row_sum is 'p' or 'pv_operand'; got {row_sum!r}")
    b, hq, lq, d = q.shape
    hkv, lk, dv = k.shape[1], k.shape[2], v.shape[3]
    g = hq // hkv
    dev = q.device
    out = torch.zeros(b, hq, lq, dv, dtype=q.dtype, device=dev)
    lse = torch.full((b, hq, lq), float("-inf"), dtype=torch.float32, device=dev) if cfg.return_lse else None
    if b == 0 or lq == 0 or lk == 0 or hq == 0:
        return out, lse

    k_mean = seq_mean(k) if cfg.smooth_k else torch.zeros(b, hkv, 1, d, device=dev)
    qg, kg = q_grouping(cfg.qk_quant_gran, warp_rows), k_grouping(cfg.qk_quant_gran)
    q8, sq = quantize_int8(q, qg)
    k8, sk = quantize_int8(k.float() - k_mean, kg)
    sq_row = expand_scale(sq * (cfg.sm_scale * LOG2E), qg, lq).view(b, hkv, g, lq)
    sk_row = expand_scale(sk, kg, lk)[:, :, None, None, :]  # [B, Hkv, 1, 1, Lk]
    q5 = q8.float().view(b, hkv, g, lq, d)
    k5 = k8.float()[:, :, None]  # [B, Hkv, 1, Lk, D]

    fp8 = cfg.pv == "fp8"
    accum = cfg.pv_accum_dtype
    if fp8:
        v_codes, v_scale, v_mean = quantize_v_fp8(v, cfg.smooth_v)
        v5 = v_codes.float()[:, :, None]
        p_scale = FP8_P_SCALE[accum]
        tile_partial_fp16 = accum == "fp32+fp16"
        whole_acc_fp16 = False
    else:
        v5 = v.float()[:, :, None]
        half_ok = v.dtype == torch.float16
        tile_partial_fp16 = half_ok and accum == "fp16+fp32"
        whole_acc_fp16 = half_ok and accum == "fp16"

    mask5 = _mask_for(cfg.attn_mask, b, hkv, g, lq, lk)
    offset = cfg.causal_offset(lq, lk)
    rows_per_chunk = max(1, min(lq, _SCORE_BUDGET // max(1, b * hq * key_tile)))

    with _exact_fp32_matmul():
        for r0 in range(0, lq, rows_per_chunk):
            r1 = min(lq, r0 + rows_per_chunk)
            rows = torch.arange(r0, r1, device=dev)
            causal_limit = rows + offset if cfg.is_causal else None
            last_key = min(lk, r1 + offset) if cfg.is_causal else lk
            qc, sqc = q5[:, :, :, r0:r1], sq_row[:, :, :, r0:r1, None]
            m = torch.full((b, hkv, g, r1 - r0), float("-inf"), device=dev)
            l = torch.zeros_like(m)
            acc = torch.zeros(b, hkv, g, r1 - r0, dv, device=dev)
            for j0 in range(0, max(0, last_key), key_tile):
                j1 = min(lk, j0 + key_tile)
                s = (qc @ k5[:, :, :, j0:j1].transpose(-1, -2)) * sqc * sk_row[..., j0:j1]
                mask_tile = mask5[:, :, :, r0:r1, j0:j1] if mask5 is not None else None
                s = _apply_mask(s, mask_tile, causal_limit, j0)
                m_new = torch.maximum(m, s.amax(dim=-1))
                m_use = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
                alpha = torch.exp2(m - m_use)
                p = torch.exp2(s - m_use[..., None])
                if fp8:
                    p_in = (p * p_scale).to(torch.float8_e4m3fn).float()
                else:
                    p_in = p.to(v.dtype).float()
                tile_sum = p.sum(dim=-1) if row_sum == "p" else p_in.sum(dim=-1) / (p_scale if fp8 else 1.0)
                l = l * alpha + tile_sum
                partial = p_in @ v5[:, :, :, j0:j1]
                if tile_partial_fp16:
                    partial = partial.half().float()
                acc = acc * alpha[..., None] + partial
                if whole_acc_fp16:
                    acc = acc.half().float()
                m = m_new
            seen = l > 0
            o = torch.where(seen[..., None], acc / torch.where(seen, l, torch.ones_like(l))[..., None], 0.0)
            if fp8:
                o = o * (v_scale / p_scale)[:, :, None, None, :]
                if cfg.smooth_v:
                    o = torch.where(seen[..., None], o + v_mean[:, :, None, None, :], o)
            out[:, :, r0:r1] = o.reshape(b, hq, r1 - r0, dv).to(q.dtype)
            if lse is not None:
                lse2 = torch.where(seen, m + torch.log2(torch.where(seen, l, torch.ones_like(l))), float("-inf"))
                corr = (q[:, :, r0:r1].float().view(b, hkv, g, r1 - r0, d) @ k_mean[:, :, None].transpose(-1, -2))
                lse[:, :, r0:r1] = (lse2 * LN2 + corr.squeeze(-1) * cfg.sm_scale).reshape(b, hq, r1 - r0)
    return out, lse


def exact_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    is_causal: bool = False,
    causal_alignment: str = "top_left",
    sm_scale: Optional[float] = None,
    attn_mask: Optional[torch.Tensor] = None,
    dtype: torch.dtype = torch.float32,
    query_chunk: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unquantized attention in ``dtype`` (fp32 or fp64) over HND tensors: the accuracy yardstick.

    Returns ``(o [B, Hq, Lq, Dv] in dtype, lse [B, Hq, Lq] in dtype)``; rows that see no key give 0 / -inf.
    Chunked over queries so memory stays bounded at long sequences.
    """
    b, hq, lq, d = q.shape
    hkv, lk, dv = k.shape[1], k.shape[2], v.shape[3]
    g = hq // max(hkv, 1)
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    out = torch.zeros(b, hq, lq, dv, dtype=dtype, device=q.device)
    lse = torch.full((b, hq, lq), float("-inf"), dtype=dtype, device=q.device)
    if b == 0 or lq == 0 or lk == 0 or hq == 0:
        return out, lse
    offset = lk - lq if causal_alignment == "bottom_right" else 0
    q5 = q.to(dtype).view(b, hkv, g, lq, d)
    k5, v5 = k.to(dtype)[:, :, None], v.to(dtype)[:, :, None]
    mask5 = _mask_for(attn_mask, b, hkv, g, lq, lk)
    chunk = query_chunk or max(1, min(lq, _SCORE_BUDGET // max(1, b * hq * lk)))
    with _exact_fp32_matmul():
        for r0 in range(0, lq, chunk):
            r1 = min(lq, r0 + chunk)
            s = (q5[:, :, :, r0:r1] @ k5.transpose(-1, -2)) * scale
            if mask5 is not None:
                mt = mask5[:, :, :, r0:r1]
                s = s.masked_fill(~mt, float("-inf")) if mt.dtype == torch.bool else s + mt.to(dtype)
            if is_causal:
                rows = torch.arange(r0, r1, device=q.device)[:, None]
                s = s.masked_fill(torch.arange(lk, device=q.device)[None, :] > rows + offset, float("-inf"))
            row_lse = torch.logsumexp(s, dim=-1)
            seen = torch.isfinite(row_lse)
            p = torch.exp(s - torch.where(seen, row_lse, torch.zeros_like(row_lse))[..., None])
            o = torch.where(seen[..., None], p @ v5, 0.0)
            out[:, :, r0:r1] = o.reshape(b, hq, r1 - r0, dv)
            lse[:, :, r0:r1] = row_lse.reshape(b, hq, r1 - r0)
    return out, lse


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    cfg: AttentionConfig,
    **kwargs,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Packed sequences: q [total_q, Hq, D], k/v [total_k, Hkv, D]; each sequence is its own dense call
    (its own K mean and scales). Returns ``(o [total_q, Hq, Dv], lse [Hq, total_q] fp32 or None)``."""
    total_q, hq, _ = q.shape
    out = torch.zeros(total_q, hq, v.shape[2], dtype=q.dtype, device=q.device)
    lse = torch.full((hq, total_q), float("-inf"), device=q.device) if cfg.return_lse else None
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for i in range(len(cq) - 1):
        qs, qe, ks, ke = cq[i], cq[i + 1], ck[i], ck[i + 1]
        if qe == qs:
            continue
        as_hnd = lambda x, s, e: x[s:e].transpose(0, 1)[None]  # noqa: E731  [1, H, L, D] view
        o, l = attention(as_hnd(q, qs, qe), as_hnd(k, ks, ke), as_hnd(v, ks, ke), cfg, **kwargs)
        out[qs:qe] = o[0].transpose(0, 1)
        if lse is not None:
            lse[:, qs:qe] = l[0]
    return out, lse

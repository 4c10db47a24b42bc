"""The attention kernel: INT8 Q·Kᵀ with per-block scales, online softmax in base 2 over BLOCK_N-key tiles,
P·V in V's 16-bit type (or e4m3 with PV_FP8), fp32 accumulation. Semantics: ``sageattention/reference.py``.

One program owns BLOCK_M query rows of one (batch, q head) and walks the keys of its kv head (GQA by index).
Key tiles come in two loops: tiles every row of the block sees in full run without any masking, and the
rest (causal diagonal, the ragged last tile) apply the causal/bounds mask. Causal blocks are launched
heaviest first so the short ones fill the tail of the grid.
"""

import triton
import triton.language as tl
from triton.language.extra import libdevice

from .quant import seq_bounds

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _scaled_logits(qk, scale, INTERPRET: tl.constexpr):
    """qk * scale rounded once, as a value no later fma can absorb: the row max and exp2(s - max) must see the
    same number (at logits ~1e11, fp16 inputs near 60000, an fma's unrounded product is off by thousands)."""
    if INTERPRET:  # no libdevice in the interpreter, and no fma contraction either
        return qk.to(tl.float32) * scale
    return libdevice.mul_rn(qk.to(tl.float32), scale)


# Unmasked tiles take the fast exponent fma(qk, scale, -m) when every logit the tile can hold, 127^2 * D * scale,
# stays under this: the row max's rounding is then at most 2^-8, so p <= 1.003 (p * 448 still rounds to e4m3's
# 448). Larger logits (fp16 inputs in the thousands) take the exact integer path in _unmasked_probs.
FAST_LOGIT_LIMIT = tl.constexpr(65536.0)


@triton.jit
def _unmasked_probs(qk, scale, tile_max, m_tile, m_new, D: tl.constexpr):
    """exp2(qk * scale - m_new) of a tile every row sees in full. tile_max: the rows' integer maxima, m_tile their
    scaled values (mul_rn), m_new >= m_tile the running max."""
    if scale * (127.0 * 127.0 * D) < FAST_LOGIT_LIMIT:  # a uniform branch per tile
        x = qk.to(tl.float32) * scale - m_new[:, None]  # one fma per logit
    else:
        # Subtract the row max in the integer domain (exact), then scale: a sum of two non-positive terms, so no
        # fma contraction can push it above 0, even for logits near 1e11 (fp16 inputs of 60000) where
        # fl(qk * scale) - max would be off by thousands.
        x = (qk - tile_max[:, None]).to(tl.float32) * scale + (m_tile - m_new)[:, None]
    return tl.math.exp2(x)


@triton.jit
def _key_tile(
    acc, l_i, m_i, q, q_scale, start_n, offs_m, offs_n, k_base, skl, ks_base, v_base, svl, svd, offs_d,
    mask_base, smm, smn, row_ok, len_k, causal_shift,
    D: tl.constexpr, BOUNDARY: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
    PV_FP8: tl.constexpr, PV_TILE_FP16: tl.constexpr, P_SCALE: tl.constexpr, INTERPRET: tl.constexpr,
):
    keys = start_n + offs_n
    if BOUNDARY:
        in_bounds = keys < len_k
        k = tl.load(k_base + keys[:, None].to(tl.int64) * skl + offs_d[None, :], mask=in_bounds[:, None], other=0)
        v = tl.load(v_base + keys[:, None].to(tl.int64) * svl + offs_d[None, :] * svd, mask=in_bounds[:, None], other=0.0)
    else:
        k = tl.load(k_base + keys[:, None].to(tl.int64) * skl + offs_d[None, :])
        v = tl.load(v_base + keys[:, None].to(tl.int64) * svl + offs_d[None, :] * svd)
    k_scale = tl.load(ks_base + start_n // 64)  # one K scale per 64 keys; BLOCK_N is 64
    qk = tl.dot(q, tl.trans(k))  # int32
    if BOUNDARY or MASK_KIND != 0:
        s = _scaled_logits(qk, q_scale * k_scale, INTERPRET)
        if BOUNDARY:
            keep = in_bounds[None, :]
            if CAUSAL:
                keep = keep & (keys[None, :] <= offs_m[:, None] + causal_shift)
            s = tl.where(keep, s, float("-inf"))
        if MASK_KIND != 0:
            m_ptrs = mask_base + offs_m[:, None].to(tl.int64) * smm + keys[None, :].to(tl.int64) * smn
            m_ok = row_ok[:, None] & (keys[None, :] < len_k)
            if MASK_KIND == 1:  # bool: True keeps
                keep_user = tl.load(m_ptrs, mask=m_ok, other=0) != 0
                s = tl.where(keep_user, s, float("-inf"))
            else:  # additive, natural-log units
                s += tl.load(m_ptrs, mask=m_ok, other=0.0).to(tl.float32) * LOG2E
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        # a user mask can hide every key a row has seen so far: exp2 must not see -inf - -inf
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new) if MASK_KIND != 0 else m_new
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
    else:
        scale = q_scale * k_scale
        tile_max = tl.max(qk, axis=1)
        # rounded once (mul_rn): an fma contracting it into m_tile - m_new would leave the product's rounding
        # residual (thousands at logits ~1e11) in the exponent: exp2 of it overflowed or flushed whole rows
        m_tile = _scaled_logits(tile_max, scale, INTERPRET)
        m_new = tl.maximum(m_i, m_tile)
        p = _unmasked_probs(qk, scale, tile_max, m_tile, m_new, D)
        alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    if PV_FP8:
        p_in = (p * P_SCALE).to(tl.float8e4nv)
    else:
        p_in = p.to(v.dtype)
    if PV_TILE_FP16:  # each tile's partial sum rounded to fp16 before it joins the fp32 accumulator
        acc = acc * alpha[:, None] + tl.dot(p_in, v).to(tl.float16).to(tl.float32)
    elif PV_FP8:  # fp8 mma accumulates with reduced precision: only a tile's partial sum stays inside it
        acc = acc * alpha[:, None] + tl.dot(p_in, v)
    else:  # the tensor cores add the partial into the rescaled accumulator
        acc = tl.dot(p_in, v, acc * alpha[:, None])
    return acc, l_i, m_new


@triton.jit
def attention_fwd(
    q8_ptr, qs_ptr, k8_ptr, ks_ptr, v_ptr, o_ptr, lse_ptr, q_ptr, kmean_ptr, mask_ptr, cu_q_ptr, cu_k_ptr,
    vscale_ptr, vmean_ptr,
    sq8b, sq8h, sq8l, sk8b, sk8h, sk8l, svb, svh, svl, svd, sob, soh, sol, sod,
    slb, slh, sqb, sqh, sql, sqd, smb, smh, smm, smn,
    n_q_heads, group, len_q_fixed, len_k_fixed, n_q_groups, n_k_groups, sm_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    BOTTOM_RIGHT: tl.constexpr, VARLEN: tl.constexpr, MASK_KIND: tl.constexpr, RETURN_LSE: tl.constexpr,
    SMOOTH_K: tl.constexpr, PV_FP8: tl.constexpr, PV_TILE_FP16: tl.constexpr, P_SCALE: tl.constexpr,
    SMOOTH_V: tl.constexpr, INTERPRET: tl.constexpr,
):
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // n_q_heads, bh % n_q_heads
    hk = h // group
    q_start, len_q = seq_bounds(cu_q_ptr, b, len_q_fixed, VARLEN)
    k_start, len_k = seq_bounds(cu_k_ptr, b, len_k_fixed, VARLEN)
    m_block = tl.num_programs(0) - 1 - pid_m if CAUSAL else pid_m
    start_m = m_block * BLOCK_M
    if start_m >= len_q:
        return
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    row_ok = offs_m < len_q
    b64, h64, hk64 = b.to(tl.int64), h.to(tl.int64), hk.to(tl.int64)
    bhk = b * (n_q_heads // group) + hk

    q8_base = q8_ptr + b64 * sq8b + h64 * sq8h + q_start.to(tl.int64) * sq8l
    q = tl.load(q8_base + offs_m[:, None].to(tl.int64) * sq8l + offs_d[None, :], mask=row_ok[:, None], other=0)
    q_scale = tl.load(qs_ptr + bh * n_q_groups + start_m // 128)  # one Q scale per 128 rows
    k_base = k8_ptr + b64 * sk8b + hk64 * sk8h + k_start.to(tl.int64) * sk8l
    v_base = v_ptr + b64 * svb + hk64 * svh + k_start.to(tl.int64) * svl
    ks_base = ks_ptr + bhk * n_k_groups
    mask_base = mask_ptr + b64 * smb + h64 * smh

    shift = len_k - len_q if BOTTOM_RIGHT else 0
    if CAUSAL:
        hi = tl.minimum(len_k, start_m + BLOCK_M + shift)
        full_hi = tl.maximum(tl.minimum(start_m + shift + 1, len_k), 0) // BLOCK_N * BLOCK_N
    else:
        hi = len_k
        full_hi = len_k // BLOCK_N * BLOCK_N

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)
    for start_n in range(0, full_hi, BLOCK_N):
        acc, l_i, m_i = _key_tile(
            acc, l_i, m_i, q, q_scale, start_n, offs_m, offs_n, k_base, sk8l, ks_base, v_base, svl, svd, offs_d,
            mask_base, smm, smn, row_ok, len_k, shift,
            D, False, CAUSAL, MASK_KIND, PV_FP8, PV_TILE_FP16, P_SCALE, INTERPRET,
        )
    for start_n in range(full_hi, hi, BLOCK_N):
        acc, l_i, m_i = _key_tile(
            acc, l_i, m_i, q, q_scale, start_n, offs_m, offs_n, k_base, sk8l, ks_base, v_base, svl, svd, offs_d,
            mask_base, smm, smn, row_ok, len_k, shift,
            D, True, CAUSAL, MASK_KIND, PV_FP8, PV_TILE_FP16, P_SCALE, INTERPRET,
        )

    seen = l_i > 0
    o = acc / tl.where(seen, l_i, 1.0)[:, None]
    if PV_FP8:
        v_scale = tl.load(vscale_ptr + bhk * D + offs_d)
        o = o * (v_scale / P_SCALE)[None, :]
        if SMOOTH_V:
            o += tl.load(vmean_ptr + bhk * D + offs_d)[None, :]
    o = tl.where(seen[:, None], o, 0.0)
    o_base = o_ptr + b64 * sob + h64 * soh + q_start.to(tl.int64) * sol
    o_ptrs = o_base + offs_m[:, None].to(tl.int64) * sol + offs_d[None, :] * sod
    tl.store(o_ptrs, o.to(o_ptr.dtype.element_ty), mask=row_ok[:, None])
    if RETURN_LSE:
        lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("-inf")) * LN2
        if SMOOTH_K:  # smoothing shifted every logit of the row by q·mean(K)
            q_base = q_ptr + b64 * sqb + h64 * sqh + q_start.to(tl.int64) * sql
            qf = tl.load(q_base + offs_m[:, None].to(tl.int64) * sql + offs_d[None, :] * sqd,
                         mask=row_ok[:, None], other=0.0).to(tl.float32)
            k_mean = tl.load(kmean_ptr + bhk * D + offs_d)
            lse += tl.sum(qf * k_mean[None, :], axis=1) * sm_scale
        lse_base = lse_ptr + b64 * slb + h64 * slh + q_start.to(tl.int64)
        tl.store(lse_base + offs_m, lse, mask=row_ok)

"""Quantization kernels, the Triton form of ``quant/spec.py`` (per_block: Q groups of 128 rows, K of 64).

Tensors are addressed through (batch, head, row, channel) strides so HND, NHD and packed varlen inputs are
read in place. Varlen: ``cu_seqlens`` gives each sequence's first row; batch stride is then unused.

K smoothing costs two launches over K: ``column_partial_stats`` splits each (sequence, head) into
``n_split`` row ranges and writes fp32 partial sums; ``quantize_rows`` adds those few partials (they sit in
L2) to get the mean, subtracts it and quantizes its block. Both launches cover the whole chip even when
B·H is small, which a single program per head looping twice over its rows would not.
"""

import os

import triton
import triton.language as tl
from triton.language.extra import libdevice

# The interpreter has no libdevice; its numpy arithmetic has no fma contraction, so the add-and-subtract
# rounding is exact there. Compiled code uses rint: (x * inv + c) - c could be contracted into an fma and then
# round the exact product, not the fp32 one torch.round sees.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def round_even(y, INTERPRET: tl.constexpr):
    if INTERPRET:  # 1.5 * 2**23 pushes |y| <= 2**22 to integer spacing: round to nearest even
        return (y + 12582912.0) - 12582912.0
    return libdevice.rint(y)


@triton.jit
def seq_bounds(cu_ptr, b, fixed_len, VARLEN: tl.constexpr):
    """(first row, length) of sequence b."""
    if VARLEN:
        start = tl.load(cu_ptr + b)
        return start, tl.load(cu_ptr + b + 1) - start
    zero = tl.zeros([], dtype=tl.int32)  # tensors, not constants: callers cast them
    return zero, zero + fixed_len


@triton.jit
def _partial_stats(
    x_ptr, sum_ptr, max_ptr, min_ptr, cu_ptr, stride_b, stride_h, stride_l, stride_d, n_heads, seq_len, split, bh,
    D: tl.constexpr, N_SPLIT: tl.constexpr, BLOCK_L: tl.constexpr, VARLEN: tl.constexpr, WITH_RANGE: tl.constexpr,
):
    b, h = bh // n_heads, bh % n_heads
    start, length = seq_bounds(cu_ptr, b, seq_len, VARLEN)
    base = x_ptr + b.to(tl.int64) * stride_b + h.to(tl.int64) * stride_h + start.to(tl.int64) * stride_l
    chunk = tl.cdiv(tl.cdiv(length, N_SPLIT), BLOCK_L) * BLOCK_L
    lo = split * chunk
    hi = tl.minimum(length, lo + chunk)
    cols = tl.arange(0, D)
    acc = tl.zeros([BLOCK_L, D], dtype=tl.float32)
    hi_acc = tl.full([BLOCK_L, D], float("-inf"), dtype=tl.float32)
    lo_acc = tl.full([BLOCK_L, D], float("inf"), dtype=tl.float32)
    for r in range(lo, hi, BLOCK_L):
        rows = r + tl.arange(0, BLOCK_L)
        ok = (rows < hi)[:, None]
        x = tl.load(base + rows[:, None].to(tl.int64) * stride_l + cols[None, :] * stride_d, mask=ok, other=0.0)
        x = x.to(tl.float32)
        acc += x
        if WITH_RANGE:
            hi_acc = tl.maximum(hi_acc, tl.where(ok, x, float("-inf")))
            lo_acc = tl.minimum(lo_acc, tl.where(ok, x, float("inf")))
    out = (bh * N_SPLIT + split) * D + cols
    tl.store(sum_ptr + out, tl.sum(acc, axis=0))
    if WITH_RANGE:
        tl.store(max_ptr + out, tl.max(hi_acc, axis=0))
        tl.store(min_ptr + out, tl.min(lo_acc, axis=0))


@triton.jit
def column_partial_stats(
    x_ptr, sum_ptr, max_ptr, min_ptr, cu_ptr, stride_b, stride_h, stride_l, stride_d, n_heads, seq_len,
    D: tl.constexpr, N_SPLIT: tl.constexpr, BLOCK_L: tl.constexpr, VARLEN: tl.constexpr, WITH_RANGE: tl.constexpr,
):
    """sum_ptr[bh, split, :] = column sums of this split's rows (fp32); WITH_RANGE: also column max and min."""
    _partial_stats(x_ptr, sum_ptr, max_ptr, min_ptr, cu_ptr, stride_b, stride_h, stride_l, stride_d, n_heads, seq_len,
                   tl.program_id(0), tl.program_id(1), D, N_SPLIT, BLOCK_L, VARLEN, WITH_RANGE)


@triton.jit
def _quantize_group(
    x_ptr, codes_ptr, scale_ptr, partial_ptr, mean_ptr, cu_ptr,
    sxb, sxh, sxl, sxd, scb, sch, scl, n_heads, seq_len, n_groups, scale_factor, grp, bh,
    D: tl.constexpr, ROWS: tl.constexpr, N_SPLIT: tl.constexpr, SMOOTH: tl.constexpr, VARLEN: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    b, h = bh // n_heads, bh % n_heads
    start, length = seq_bounds(cu_ptr, b, seq_len, VARLEN)
    if grp * ROWS < length:  # groups past a short sequence's end hold nothing
        rows = grp * ROWS + tl.arange(0, ROWS)
        cols = tl.arange(0, D)
        valid = (rows < length)[:, None]
        row_off = (start + rows)[:, None].to(tl.int64)
        x_base = x_ptr + b.to(tl.int64) * sxb + h.to(tl.int64) * sxh
        x = tl.load(x_base + row_off * sxl + cols[None, :] * sxd, mask=valid, other=0.0).to(tl.float32)
        if SMOOTH:
            splits = tl.arange(0, N_SPLIT)
            partial = tl.load(partial_ptr + (bh * N_SPLIT + splits)[:, None] * D + cols[None, :])
            mean = tl.sum(partial, axis=0) / length.to(tl.float32)
            x = tl.where(valid, x - mean[None, :], 0.0)
            if grp == 0:
                tl.store(mean_ptr + bh * D + cols, mean)
        amax = tl.max(tl.max(tl.abs(x), axis=1), axis=0)
        # (1 / amax) * 127, rounded twice, as torch evaluates quant/spec.py's 127 / amax (reciprocal, then multiply)
        inv = tl.where(amax > 0, tl.math.div_rn(1.0, tl.maximum(amax, 1e-30)) * 127.0, 0.0)
        codes = round_even(x * inv, INTERPRET).to(tl.int8)
        c_base = codes_ptr + b.to(tl.int64) * scb + h.to(tl.int64) * sch
        tl.store(c_base + row_off * scl + cols[None, :], codes, mask=valid)
        tl.store(scale_ptr + bh * n_groups + grp, tl.math.div_rn(amax, 127.0) * scale_factor)


@triton.jit
def quantize_rows(
    x_ptr, codes_ptr, scale_ptr, partial_ptr, mean_ptr, cu_ptr,
    sxb, sxh, sxl, sxd, scb, sch, scl, n_heads, seq_len, n_groups, scale_factor,
    D: tl.constexpr, ROWS: tl.constexpr, N_SPLIT: tl.constexpr, SMOOTH: tl.constexpr, VARLEN: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """One group of ROWS rows -> INT8 codes (round to nearest even) and scale * scale_factor.

    SMOOTH: subtract the sequence mean first (from N_SPLIT partial sums); group 0 also stores that mean."""
    _quantize_group(x_ptr, codes_ptr, scale_ptr, partial_ptr, mean_ptr, cu_ptr, sxb, sxh, sxl, sxd, scb, sch, scl,
                    n_heads, seq_len, n_groups, scale_factor, tl.program_id(0), tl.program_id(1), D, ROWS, N_SPLIT,
                    SMOOTH, VARLEN, INTERPRET)


@triton.jit
def quantize_q_with_k_stats(
    q_ptr, q_codes_ptr, q_scale_ptr, cu_q_ptr, sqb, sqh, sql, sqd, scb, sch, scl, heads_q, len_q, n_q_groups,
    q_factor, k_ptr, sum_ptr, cu_k_ptr, skb, skh, skl, skd, heads_k, len_k, n_q_programs,
    D: tl.constexpr, Q_ROWS: tl.constexpr, N_SPLIT: tl.constexpr, BLOCK_L: tl.constexpr, VARLEN: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """quantize_rows of Q (programs [0, n_q_programs)) and column_partial_stats of K (sums only; the rest) in one
    launch: they do not depend on each other, and each Triton launch costs ~40 us of host time."""
    pid = tl.program_id(0)
    if pid < n_q_programs:
        _quantize_group(q_ptr, q_codes_ptr, q_scale_ptr, q_scale_ptr, q_scale_ptr, cu_q_ptr, sqb, sqh, sql, sqd, scb,
                        sch, scl, heads_q, len_q, n_q_groups, q_factor, pid % n_q_groups, pid // n_q_groups, D,
                        Q_ROWS, 1, False, VARLEN, INTERPRET)
    else:
        i = pid - n_q_programs
        _partial_stats(k_ptr, sum_ptr, sum_ptr, sum_ptr, cu_k_ptr, skb, skh, skl, skd, heads_k, len_k, i % N_SPLIT,
                       i // N_SPLIT, D, N_SPLIT, BLOCK_L, VARLEN, False)


@triton.jit
def quantize_fp8_columns(
    x_ptr, codes_ptr, scale_ptr, mean_ptr, sum_ptr, max_ptr, min_ptr, cu_ptr,
    sxb, sxh, sxl, sxd, scb, sch, scl, scd, n_heads, seq_len,
    D: tl.constexpr, ROWS: tl.constexpr, N_SPLIT: tl.constexpr, SMOOTH: tl.constexpr, VARLEN: tl.constexpr,
):
    """V -> e4m3 with one scale per channel (amax over the sequence / 448), from the column statistics:
    amax|x - mean| = max(max - mean, mean - min), so smoothing needs no extra pass. Group 0 stores scale, mean."""
    grp, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // n_heads, bh % n_heads
    start, length = seq_bounds(cu_ptr, b, seq_len, VARLEN)
    if grp * ROWS >= length:
        return
    rows = grp * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, D)
    valid = (rows < length)[:, None]
    stats = (bh * N_SPLIT + tl.arange(0, N_SPLIT))[:, None] * D + cols[None, :]
    col_max = tl.max(tl.load(max_ptr + stats), axis=0)
    col_min = tl.min(tl.load(min_ptr + stats), axis=0)
    if SMOOTH:
        mean = tl.sum(tl.load(sum_ptr + stats), axis=0) / length.to(tl.float32)
    else:
        mean = tl.zeros([D], dtype=tl.float32)
    amax = tl.maximum(col_max - mean, mean - col_min)
    inv = tl.where(amax > 0, tl.math.div_rn(448.0, tl.maximum(amax, 1e-30)), 0.0)
    row_off = (start + rows)[:, None].to(tl.int64)
    x = tl.load(x_ptr + b.to(tl.int64) * sxb + h.to(tl.int64) * sxh + row_off * sxl + cols[None, :] * sxd,
                mask=valid, other=0.0).to(tl.float32)
    y = tl.minimum(tl.maximum((x - mean[None, :]) * inv[None, :], -448.0), 448.0)
    c_base = codes_ptr + b.to(tl.int64) * scb + h.to(tl.int64) * sch
    tl.store(c_base + row_off * scl + cols[None, :].to(tl.int64) * scd, y.to(tl.float8e4nv), mask=valid)
    if grp == 0:
        tl.store(scale_ptr + bh * D + cols, tl.math.div_rn(amax, 448.0))
        tl.store(mean_ptr + bh * D + cols, mean)

"""torch.library ops over the Triton launches, so ``torch.compile(fullgraph=True)`` traces quantization and
attention without graph breaks (``triton_op`` lets the compiler see the kernels; shapes alone decide every
launch, so fake tensors trace them).

Tensors are dense ``[B, H, L, D]`` (any strides) or, when ``cu_seqlens_*`` are given, packed
``[total, H, D]`` with ``max_seqlen_*`` bounding each sequence. Scales are ``[n_seqs, H, n_groups]``.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
import triton
from torch.library import triton_op, wrap_triton
from triton.compiler.errors import CompilationError

try:  # eager calls skip the op dispatcher and the HOP wrapper, as triton_op's own eager path does
    from torch._library.triton import set_wrap_triton_enabled
except ImportError:  # pragma: no cover
    set_wrap_triton_enabled = None

from . import attention as attn_kernels
from . import quant as quant_kernels
from .tiles import BLOCK_N, tile_config

try:  # Gluon ships with Triton 3.5+; without it every call runs attention.py
    from . import attention_sm90 as sm90_kernels
except ImportError:  # pragma: no cover
    sm90_kernels = None

# False runs attention.py where attention_sm90.py would (SAGEATTN_TRITON_SM90=0; benchmarks and tests set it to
# compare the two).
USE_SM90_KERNEL = os.environ.get("SAGEATTN_TRITON_SM90", "1") != "0"
SM90_HEAD_DIMS = (64,)  # measured faster than attention.py there (benchmarks/NOTES.md); D=128 measured slower

Q_ROWS, K_ROWS = 128, 64  # quant/spec.py per_block groups
STATS_ROWS = 64


def _bhld_strides(x: torch.Tensor, varlen: bool) -> tuple:
    """(batch, head, row, channel) strides; packed varlen tensors have no batch stride."""
    if varlen:
        return 0, x.stride(1), x.stride(0), x.stride(2)
    return x.stride(0), x.stride(1), x.stride(2), x.stride(3)


def _shape(x: torch.Tensor, cu: Optional[torch.Tensor], max_len: int) -> tuple:
    """(n_seqs, heads, length bound, head dim)."""
    if cu is not None:
        return cu.shape[0] - 1, x.shape[1], max_len, x.shape[2]
    return x.shape[0], x.shape[1], x.shape[2], x.shape[3]


def _n_split(length: int, n_rows_groups: int) -> int:
    """Row ranges per (sequence, head) for the column statistics: enough programs to cover the chip."""
    by_work = triton.next_power_of_2(max(1, triton.cdiv(512, max(1, n_rows_groups))))
    by_length = triton.next_power_of_2(max(1, triton.cdiv(length, 256)))
    return max(1, min(16, by_work, by_length))


def _unused(device) -> torch.Tensor:
    """Stands in for a pointer a kernel variant never touches. Never pass an output twice instead: functionalizing
    a kernel that writes through one of two aliased arguments loses the write (torch.compile, opcheck)."""
    return torch.empty(1, dtype=torch.int32, device=device)


def _column_stats(x, cu, max_len, with_range: bool):
    n, h, length, d = _shape(x, cu, max_len)
    n_split = _n_split(length, n * h)
    sums = torch.empty(n * h, n_split, d, dtype=torch.float32, device=x.device)
    hi = torch.empty_like(sums) if with_range else _unused(x.device)
    lo = torch.empty_like(sums) if with_range else _unused(x.device)
    wrap_triton(quant_kernels.column_partial_stats)[(n_split, n * h)](
        x, sums, hi, lo, cu if cu is not None else _unused(x.device), *_bhld_strides(x, cu is not None), h, length,
        D=d, N_SPLIT=n_split, BLOCK_L=STATS_ROWS, VARLEN=cu is not None, WITH_RANGE=with_range, num_warps=4,
    )
    return sums, hi, lo, n_split


def _quantize_int8(x, cu, max_len, rows, factor, smooth, want_mean=True, stats=None):
    """(codes, scales, mean: the smoothing mean, zeros unsmoothed, or with want_mean=False a placeholder: Q's
    zeros cost a fill launch per call for nothing). `stats`: x's column sums and split count, if already taken."""
    n, h, length, d = _shape(x, cu, max_len)
    varlen = cu is not None
    codes = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    n_groups = triton.cdiv(length, rows)
    scale = torch.empty(n, h, n_groups, dtype=torch.float32, device=x.device)
    mean = torch.zeros(n, h, d, dtype=torch.float32, device=x.device) if smooth or want_mean else _unused(x.device)
    if smooth and stats is not None:
        sums, n_split = stats
    elif smooth:
        sums, _, _, n_split = _column_stats(x, cu, max_len, with_range=False)
    else:
        sums, n_split = _unused(x.device), 1
    cs = _bhld_strides(codes, varlen)
    wrap_triton(quant_kernels.quantize_rows)[(n_groups, n * h)](
        x, codes, scale, sums, mean, cu if varlen else _unused(x.device), *_bhld_strides(x, varlen), cs[0], cs[1],
        cs[2], h, length, n_groups, factor, D=d, ROWS=rows, N_SPLIT=n_split, SMOOTH=smooth, VARLEN=varlen,
        INTERPRET=quant_kernels.INTERPRETED,
        num_warps=4 if d <= 128 else 8,
    )
    return codes, scale, mean


def quant_qk_impl(
    q: torch.Tensor, k: torch.Tensor, cu_seqlens_q: Optional[torch.Tensor], cu_seqlens_k: Optional[torch.Tensor],
    max_seqlen_q: int, max_seqlen_k: int, q_scale_factor: float, smooth_k: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (q codes, q scales * q_scale_factor, k codes, k scales, k mean [n, Hkv, D] fp32 (zeros unsmoothed)).
    Two launches: Q's codes with K's column sums (quantize_q_with_k_stats), then K's codes."""
    if not smooth_k:
        q8, qs, _ = _quantize_int8(q, cu_seqlens_q, max_seqlen_q, Q_ROWS, q_scale_factor, False, want_mean=False)
        k8, ks, km = _quantize_int8(k, cu_seqlens_k, max_seqlen_k, K_ROWS, 1.0, False)
        return q8, qs, k8, ks, km
    varlen = cu_seqlens_q is not None
    n_q, hq, lq, d = _shape(q, cu_seqlens_q, max_seqlen_q)
    n_k, hk, lk, _ = _shape(k, cu_seqlens_k, max_seqlen_k)
    q8 = torch.empty(q.shape, dtype=torch.int8, device=q.device)
    n_q_groups = triton.cdiv(lq, Q_ROWS)
    qs = torch.empty(n_q, hq, n_q_groups, dtype=torch.float32, device=q.device)
    n_split = _n_split(lk, n_k * hk)
    sums = torch.empty(n_k * hk, n_split, d, dtype=torch.float32, device=k.device)
    n_q_programs = n_q_groups * n_q * hq
    dummy = _unused(q.device)  # read-only roles may share it
    cs = _bhld_strides(q8, varlen)
    wrap_triton(quant_kernels.quantize_q_with_k_stats)[(n_q_programs + n_split * n_k * hk,)](
        q, q8, qs, cu_seqlens_q if varlen else dummy, *_bhld_strides(q, varlen), cs[0], cs[1], cs[2], hq, lq, n_q_groups,
        q_scale_factor, k, sums, cu_seqlens_k if varlen else dummy, *_bhld_strides(k, varlen), hk, lk, n_q_programs,
        D=d, Q_ROWS=Q_ROWS, N_SPLIT=n_split, BLOCK_L=STATS_ROWS, VARLEN=varlen, INTERPRET=quant_kernels.INTERPRETED,
        num_warps=4 if d <= 128 else 8,
    )
    k8, ks, km = _quantize_int8(k, cu_seqlens_k, max_seqlen_k, K_ROWS, 1.0, True, stats=(sums, n_split))
    return q8, qs, k8, ks, km


def quant_v_fp8_impl(
    v: torch.Tensor, cu_seqlens: Optional[torch.Tensor], max_seqlen: int, smooth_v: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (e4m3 codes stored channel-major [n, H, D, L] (packed: [H, D, total]) so P·V reads keys
    contiguously, per-channel scale [n, H, D], mean [n, H, D])."""
    n, h, length, d = _shape(v, cu_seqlens, max_seqlen)
    varlen = cu_seqlens is not None
    sums, hi, lo, n_split = _column_stats(v, cu_seqlens, max_seqlen, with_range=True)
    if varlen:
        codes = torch.empty(h, d, v.shape[0], dtype=torch.float8_e4m3fn, device=v.device)
        cs = (0, codes.stride(0), 1, codes.stride(1))
    else:
        codes = torch.empty(n, h, d, length, dtype=torch.float8_e4m3fn, device=v.device)
        cs = (codes.stride(0), codes.stride(1), 1, codes.stride(2))
    scale = torch.empty(n, h, d, dtype=torch.float32, device=v.device)
    mean = torch.empty_like(scale)
    wrap_triton(quant_kernels.quantize_fp8_columns)[(triton.cdiv(length, K_ROWS), n * h)](
        v, codes, scale, mean, sums, hi, lo, cu_seqlens if varlen else _unused(v.device), *_bhld_strides(v, varlen), *cs,
        h, length, D=d, ROWS=K_ROWS, N_SPLIT=n_split, SMOOTH=smooth_v, VARLEN=varlen, num_warps=4,
    )
    return codes, scale, mean


def fp8_v_strides(codes: torch.Tensor, varlen: bool) -> tuple:
    """(batch, head, key, channel) strides of quant_v_fp8's codes."""
    if varlen:
        return 0, codes.stride(0), 1, codes.stride(1)
    return codes.stride(0), codes.stride(1), 1, codes.stride(2)


def attention_impl(
    q8: torch.Tensor, q_scale: torch.Tensor, k8: torch.Tensor, k_scale: torch.Tensor, v: torch.Tensor,
    q: torch.Tensor, k_mean: torch.Tensor, v_scale: Optional[torch.Tensor], v_mean: Optional[torch.Tensor],
    attn_mask: Optional[torch.Tensor], cu_seqlens_q: Optional[torch.Tensor], cu_seqlens_k: Optional[torch.Tensor],
    max_seqlen_q: int, max_seqlen_k: int, sm_scale: float, is_causal: bool, bottom_right: bool,
    return_lse: bool, smooth_k: bool, smooth_v: bool, pv_accum_dtype: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (o like q, lse [n, Hq, Lq] (packed: [Hq, total_q]) fp32, or an empty tensor without return_lse).

    ``v`` is the 16-bit V, or with ``v_scale`` the codes of ``quant_v_fp8``."""
    varlen = cu_seqlens_q is not None
    n, hq, lq, d = _shape(q, cu_seqlens_q, max_seqlen_q)
    hk, lk = k8.shape[1], (max_seqlen_k if varlen else k8.shape[2])
    pv_fp8 = v_scale is not None
    block_m, num_warps, num_stages = tile_config(int(d), is_causal, pv_fp8)  # int(): specialize a SymInt
    o = torch.empty_like(q)
    if return_lse:
        lse = torch.empty((hq, q.shape[0]) if varlen else (n, hq, lq), dtype=torch.float32, device=q.device)
        ls = (0, lse.stride(0)) if varlen else (lse.stride(0), lse.stride(1))
    else:
        lse, ls = torch.empty(0, dtype=torch.float32, device=q.device), (0, 0)
    mask_kind, mask, ms = 0, _unused(q.device), (0, 0, 0, 0)
    if attn_mask is not None:
        mask_kind = 1 if attn_mask.dtype == torch.bool else 2
        m = attn_mask.to(torch.uint8) if mask_kind == 1 else attn_mask  # bytes of the caller's shape, not [B,H,Lq,Lk]
        mask = m.reshape((1,) * (4 - m.dim()) + tuple(m.shape)).expand(n, hq, lq, lk)
        ms = mask.stride()
    vs = fp8_v_strides(v, varlen) if pv_fp8 else _bhld_strides(v, varlen)
    if _sm90_kernel_serves(q, v, d, varlen, pv_fp8, mask_kind, pv_accum_dtype):
        try:
            sm90_kernels.attention_fwd_sm90[(triton.cdiv(lq, 128), n * hq)](
                q8, q_scale, k8, k_scale, v, o, lse, q, k_mean,
                *_bhld_strides(q8, False)[:3], *_bhld_strides(k8, False)[:3], *vs[:3], *_bhld_strides(o, False),
                *ls, *_bhld_strides(q, False), hq, hq // hk, lq, lk, q_scale.shape[-1], k_scale.shape[-1], sm_scale,
                D=d, BLOCK_M=128, BLOCK_N=BLOCK_N, CAUSAL=is_causal, BOTTOM_RIGHT=bottom_right,
                RETURN_LSE=return_lse, SMOOTH_K=smooth_k, num_warps=8,
            )
            return o, lse
        except (CompilationError, RuntimeError) as exc:  # a Triton whose Gluon differs from the one measured
            if isinstance(exc, RuntimeError) and "PassManager" not in str(exc):
                raise  # not a compile failure
            _disable_sm90_kernel(exc)
    dummy = _unused(q.device)  # read-only roles may share it
    grid = (triton.cdiv(lq, block_m), n * hq)
    wrap_triton(attn_kernels.attention_fwd)[grid](
        q8, q_scale, k8, k_scale, v, o, lse, q, k_mean, mask,
        cu_seqlens_q if varlen else dummy, cu_seqlens_k if varlen else dummy,
        v_scale if pv_fp8 else dummy, v_mean if pv_fp8 else dummy,
        *_bhld_strides(q8, varlen)[:3], *_bhld_strides(k8, varlen)[:3], *vs, *_bhld_strides(o, varlen),
        *ls, *_bhld_strides(q, varlen), *ms,
        hq, hq // hk, lq, lk, q_scale.shape[-1], k_scale.shape[-1], sm_scale,
        D=d, BLOCK_M=block_m, BLOCK_N=BLOCK_N, CAUSAL=is_causal, BOTTOM_RIGHT=bottom_right, VARLEN=varlen,
        MASK_KIND=mask_kind, RETURN_LSE=return_lse, SMOOTH_K=smooth_k, PV_FP8=pv_fp8,
        PV_TILE_FP16=pv_accum_dtype in ("fp16+fp32", "fp32+fp16") and (pv_fp8 or q.dtype == torch.float16),
        P_SCALE=1.0 if pv_accum_dtype == "fp32+fp16" else 448.0, SMOOTH_V=smooth_v and pv_fp8,
        INTERPRET=quant_kernels.INTERPRETED,
        num_warps=num_warps, num_stages=num_stages,
    )
    return o, lse


def _disable_sm90_kernel(exc: Exception) -> None:
    global USE_SM90_KERNEL
    USE_SM90_KERNEL = False
    warnings.warn(f"sageattention: the Hopper Gluon kernel did not compile with Triton {triton.__version__} "
                  f"({type(exc).__name__}); using the portable Triton kernel from now on", RuntimeWarning, stacklevel=3)


def _sm90_kernel_serves(q, v, d, varlen, pv_fp8, mask_kind, pv_accum_dtype) -> bool:
    """attention_sm90.py takes the call: Hopper, eager on plain tensors (torch.compile and fake tensors trace
    attention.py), a measured head dim, 16-bit P·V into fp32, no mask, fixed length."""
    return (
        USE_SM90_KERNEL and sm90_kernels is not None and not quant_kernels.INTERPRETED
        and type(q) is torch.Tensor and not torch.compiler.is_compiling()
        and q.is_cuda and torch.cuda.get_device_capability(q.device)[0] == 9
        and d in SM90_HEAD_DIMS and v.dtype in (torch.float16, torch.bfloat16) and not pv_fp8 and mask_kind == 0
        and not varlen and pv_accum_dtype not in ("fp16+fp32", "fp32+fp16")
        # 16-byte copies need aligned rows, and Triton sees alignment only in strides divisible by 16
        and v.stride(3) == 1 and v.data_ptr() % 16 == 0 and all(v.stride(i) % 16 == 0 for i in range(3))
    )


quant_qk = triton_op("sageattention::triton_quant_qk", quant_qk_impl, mutates_args=())
quant_v_fp8 = triton_op("sageattention::triton_quant_v_fp8", quant_v_fp8_impl, mutates_args=())
attention = triton_op("sageattention::triton_attention", attention_impl, mutates_args=())


def calls(direct: bool):
    """(quant_qk, quant_v_fp8, attention): the registered ops, or with `direct` (plain tensors, eager) the
    implementations launched straight from Python, saving the dispatcher's per-op overhead."""
    if not direct or set_wrap_triton_enabled is None:
        return quant_qk, quant_v_fp8, attention

    def plain(impl):
        def run(*args):
            with set_wrap_triton_enabled(False):
                return impl(*args)

        return run

    return plain(quant_qk_impl), plain(quant_v_fp8_impl), plain(attention_impl)

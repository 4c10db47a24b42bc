"""Quantization ops (module ``sageattention._C_quant``) and the step every CUDA backend shares: Q and K to INT8
with K smoothing, V to FP8. Semantics: ``sageattention/quant/spec.py``; the kernels match it bit for bit given
the same K mean (their mean sums in another order, so it can differ from torch's in the last bit)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .._ext import load
from ..config import LOG2E, AttentionConfig
from ..quant.spec import K_BLOCK_ROWS

V_KEY_TILE = 64  # quantized V^T is padded to a multiple of this many keys
# V16_POSITION[k]: slot of key k (0..15) inside its group of 16 in quantized V^T (csrc/quant: v16_position).
V16_POSITION = tuple(4 * ((k & 7) >> 1) + 2 * (k >> 3) + (k & 1) for k in range(16))


def _module():
    return load("_C_quant")


def _rows_aligned(x: torch.Tensor) -> torch.Tensor:
    """The kernels read 16-byte rows: a contiguous last dim, strides and base 16-byte aligned."""
    ok = x.stride(-1) == 1 and all(s % 8 == 0 for s in x.stride()[:-1]) and x.data_ptr() % 16 == 0
    return x if ok else x.contiguous()


def check_input(x: torch.Tensor, name: str = "x") -> None:
    """One-line TypeError/ValueError before anything reaches C++ (whose checks are only a safety net)."""
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"{name} is {x.dtype}; the CUDA quantization kernels take torch.float16 or torch.bfloat16")
    if x.dim() != 4 or x.shape[-1] not in (64, 128):
        raise ValueError(f"{name} must be [B, H, L, 64 or 128], got {tuple(x.shape)}; zero-pad the head dim (api.py does)")
    if not x.is_cuda:
        raise ValueError(f"{name} is on {x.device}; the CUDA quantization kernels need a CUDA tensor")


def group_counts(length: int, group_rows: int, residues: int) -> int:
    return -(-length // group_rows) * residues


@torch.library.custom_op("sageattention::seq_mean", mutates_args=())
def seq_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the sequence of [B, H, L, D] fp16/bf16, fp32 [B, H, D]."""
    check_input(x)
    return _module().seq_mean(_rows_aligned(x))


@seq_mean.register_fake
def _(x):
    return x.new_empty((x.shape[0], x.shape[1], x.shape[3]), dtype=torch.float32)


@torch.library.custom_op("sageattention::quant_int8", mutates_args=())
def quant_int8(
    x: torch.Tensor, mean: Optional[torch.Tensor], group_rows: int, residues: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes [B, H, L, D] contiguous, fp32 scales [B, H, n_groups]) of x - mean. group_rows 16/32/64;
    residues 1 (per_warp), 8 (Q per_thread) or 4 (K per_thread)."""
    check_input(x)
    if group_rows not in (16, 32, 64) or residues not in (1, 4, 8):
        raise ValueError(f"group_rows must be 16, 32 or 64 and residues 1, 4 or 8; got {group_rows}, {residues}")
    codes, scales = _module().quant_int8(_rows_aligned(x), mean, group_rows, residues)
    return codes, scales


@quant_int8.register_fake
def _(x, mean, group_rows, residues):
    b, h, length, _ = x.shape
    codes = x.new_empty(x.shape, dtype=torch.int8)
    return codes, x.new_empty((b, h, group_counts(length, group_rows, residues)), dtype=torch.float32)


@torch.library.custom_op("sageattention::quant_v_fp8", mutates_args=())
def quant_v_fp8(v: torch.Tensor, smooth_v: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(e4m3 V^T [B, H, D, L padded to 64] with keys permuted by V16_POSITION, scale [B, H, D], mean [B, H, D])."""
    check_input(v, "v")
    vt, scale, mean = _module().quant_v_fp8(_rows_aligned(v), smooth_v)
    return vt, scale, mean


@quant_v_fp8.register_fake
def _(v, smooth_v):
    b, h, length, d = v.shape
    l_pad = -(-length // V_KEY_TILE) * V_KEY_TILE
    vt = v.new_empty((b, h, d, l_pad), dtype=torch.float8_e4m3fn)
    return vt, v.new_empty((b, h, d), dtype=torch.float32), v.new_empty((b, h, d), dtype=torch.float32)


def untranspose_v(vt: torch.Tensor, length: int) -> torch.Tensor:
    """Quantized V^T back to quant/spec.py's [B, H, L, D] codes (tests and debugging)."""
    b, h, d, l_pad = vt.shape
    slots = torch.tensor(V16_POSITION, device=vt.device)
    keys = torch.arange(l_pad, device=vt.device)
    src = (keys // 16) * 16 + slots[keys % 16]
    return vt.view(torch.uint8)[..., src].transpose(-1, -2)[:, :, :length].view(torch.float8_e4m3fn)


class QuantizedQK(NamedTuple):
    q8: torch.Tensor
    q_scale: torch.Tensor
    k8: torch.Tensor
    k_scale: torch.Tensor
    k_mean: Optional[torch.Tensor]
    q_group_rows: int
    q_residues: int
    k_residues: int


def _grouping(cfg: AttentionConfig) -> tuple[int, int]:
    """(Q residues, K residues) of cfg's granularity."""
    if cfg.qk_quant_gran not in ("per_warp", "per_thread"):
        raise ValueError(
            f"the CUDA kernels take qk_quant_gran 'per_warp' or 'per_thread', got {cfg.qk_quant_gran!r}; "
            "use the Triton kernel for 'per_block'"
        )
    return (8, 4) if cfg.qk_quant_gran == "per_thread" else (1, 1)


def quantize_qk(q: torch.Tensor, k: torch.Tensor, cfg: AttentionConfig, warp_rows: int = 32) -> QuantizedQK:
    """Q and K (HND views) to INT8 with cfg's granularity; K smoothed when cfg.smooth_k. One op per step (tests
    and debugging); the backends call quantize_qkv."""
    q_res, k_res = _grouping(cfg)
    k_mean = seq_mean(k) if cfg.smooth_k else None
    q8, sq = quant_int8(q, None, warp_rows, q_res)
    k8, sk = quant_int8(k, k_mean, K_BLOCK_ROWS, k_res)
    return QuantizedQK(q8, sq, k8, sk, k_mean, warp_rows, q_res, k_res)


def _quant_qkv(
    q: torch.Tensor, k: torch.Tensor, v: Optional[torch.Tensor], q_group_rows: int, q_residues: int,
    k_residues: int, smooth_k: bool, smooth_v: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor]:
    """One call's quantization in three launches: (q codes, q scales, k codes, k scales, k mean or empty [0], and with
    v: V^T codes, v scale, v mean (else three empty [0])), each as quant_int8 / seq_mean / quant_v_fp8 give it."""
    check_input(q, "q")
    check_input(k, "k")
    if v is not None:
        check_input(v, "v")
        v = _rows_aligned(v)
    if q.dtype != k.dtype or (v is not None and v.dtype != k.dtype):
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype if v is not None else None}")
    out = _module().quant_qkv(_rows_aligned(q), _rows_aligned(k), v, q_group_rows, q_residues, k_residues, smooth_k,
                              smooth_v)
    return tuple(out)


quant_qkv = torch.library.custom_op("sageattention::quant_qkv", _quant_qkv, mutates_args=())


@quant_qkv.register_fake
def _(q, k, v, q_group_rows, q_residues, k_residues, smooth_k, smooth_v):
    b, hq, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    f32 = dict(dtype=torch.float32)

    def none():  # a fresh one each time: outputs must not alias each other (the real op's do not)
        return q.new_empty((0,), **f32)

    k_mean = q.new_empty((b, hk, d), **f32) if smooth_k else none()
    if v is None:
        vt, v_scale, v_mean = none(), none(), none()
    else:
        l_pad = -(-lk // V_KEY_TILE) * V_KEY_TILE
        vt = q.new_empty((b, hk, d, l_pad), dtype=torch.float8_e4m3fn)
        v_scale, v_mean = q.new_empty((b, hk, d), **f32), q.new_empty((b, hk, d), **f32)
    return (
        q.new_empty(q.shape, dtype=torch.int8), q.new_empty((b, hq, group_counts(lq, q_group_rows, q_residues)), **f32),
        q.new_empty(k.shape, dtype=torch.int8), q.new_empty((b, hk, group_counts(lk, K_BLOCK_ROWS, k_residues)), **f32),
        k_mean, vt, v_scale, v_mean,
    )


class QuantizedV(NamedTuple):
    vt: torch.Tensor
    v_scale: torch.Tensor
    v_mean: torch.Tensor


def quantize_qkv(
    q: torch.Tensor, k: torch.Tensor, v: Optional[torch.Tensor], cfg: AttentionConfig, warp_rows: int = 32,
    direct: bool = False,
) -> tuple[QuantizedQK, Optional[QuantizedV]]:
    """What one CUDA backend call needs: Q and K to INT8 as quantize_qk, and V to FP8 as quant_v_fp8 when `v` is
    given (one op, three launches). `direct`: run the op's implementation without the op (_backend.direct_call)."""
    q_res, k_res = _grouping(cfg)
    op = _quant_qkv if direct else quant_qkv
    q8, sq, k8, sk, k_mean, vt, v_scale, v_mean = op(q, k, v, warp_rows, q_res, k_res, cfg.smooth_k, cfg.smooth_v)
    qk = QuantizedQK(q8, sq, k8, sk, k_mean if cfg.smooth_k else None, warp_rows, q_res, k_res)
    return qk, (QuantizedV(vt, v_scale, v_mean) if v is not None else None)


def qk_scale(cfg: AttentionConfig) -> float:
    return cfg.sm_scale * LOG2E


def finish_lse(lse: torch.Tensor, q: torch.Tensor, k_mean: Optional[torch.Tensor], cfg: AttentionConfig):
    """Adds the K-smoothing term sm_scale * q · mean(K) that the kernel's softmax never saw."""
    if k_mean is None:
        return lse
    b, hq, lq, d = q.shape
    hkv = k_mean.shape[1]
    corr = torch.einsum("bhgld,bhd->bhgl", q.float().view(b, hkv, hq // hkv, lq, d), k_mean)
    return lse + cfg.sm_scale * corr.reshape(b, hq, lq)

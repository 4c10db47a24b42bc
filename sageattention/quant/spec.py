"""Quantization in plain PyTorch: the specification every quantization kernel must reproduce.

Scale layouts (all fp32, one scale per group of rows, shared by every channel of the row):

* INT8 Q/K, symmetric: ``x_int8 = round(x / scale)``, ``scale = amax(|x|) / 127`` over the group; a group of
  zeros gets scale 0 and codes 0. Rounding is to nearest; kernels may break ties either way. The softmax
  factor ``sm_scale * log2(e)`` is folded into Q's scale *after* quantization (codes are the same either way).
  Scales are stored ``[B, H, n_groups]`` with groups ordered as below.

  ============  ==========================================  ===========================================
  granularity   Q groups (rows of one batch and head)        K groups (keys of one batch and head)
  ============  ==========================================  ===========================================
  per_block     ``row // 128``                               ``key // 64``
  per_warp      ``row // warp_rows`` (32 by default)         ``key // 64``
  per_thread    ``(row // warp_rows) * 8 + row % 8``         ``(key // 64) * 4 + (key % 8) // 2``
  ============  ==========================================  ===========================================

  per_thread follows the m16n8k32 INT8 mma fragments: lane ``l`` of a warp holds A rows ``l // 4 (+8k)`` and
  accumulator columns ``2 * (l % 4) + {0, 1}`` of each 8-key tile, so one Q scale per row residue mod 8 and
  one K scale per column pair make dequantization a per-register multiply.

* K smoothing: ``K' = K - mean_seq(K)`` per (batch, kv head, channel), in fp32, before quantization.
* FP8 e4m3 V, per channel: ``scale_v = amax_seq(|V'|) / 448`` per (batch, kv head, channel), ``V' = V`` or
  ``V - mean_seq(V)`` with smooth_v. Stored ``[B, H, D]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

INT8_MAX = 127.0
FP8_E4M3_MAX = 448.0
K_BLOCK_ROWS = 64


@dataclass(frozen=True)
class Grouping:
    """How rows of one (batch, head) map to scale groups."""

    rows: int  # rows per block
    residues: int = 1  # >1: rows of a block split by a residue pattern (per_thread)
    kind: str = "q"  # "q": residue row % 8; "k": residue (key % 8) // 2

    def index(self, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
        rows = torch.arange(length, device=device)
        block = rows // self.rows
        if self.residues == 1:
            return block
        residue = rows % 8 if self.kind == "q" else (rows % 8) // 2
        return block * self.residues + residue

    def count(self, length: int) -> int:
        return -(-length // self.rows) * self.residues


def q_grouping(gran: str, warp_rows: int = 32) -> Grouping:
    if gran == "per_block":
        return Grouping(128)
    if gran == "per_warp":
        return Grouping(warp_rows)
    if gran == "per_thread":
        return Grouping(warp_rows, 8, "q")
    raise ValueError(f"unknown qk_quant_gran {gran!r}; use 'per_block', 'per_warp' or 'per_thread'")


def k_grouping(gran: str) -> Grouping:
    if gran in ("per_block", "per_warp"):
        return Grouping(K_BLOCK_ROWS)
    if gran == "per_thread":
        return Grouping(K_BLOCK_ROWS, 4, "k")
    raise ValueError(f"unknown qk_quant_gran {gran!r}; use 'per_block', 'per_warp' or 'per_thread'")


def quantize_int8(x: torch.Tensor, grouping: Grouping) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, H, L, D] (any float dtype) -> (int8 codes [B, H, L, D], fp32 scales [B, H, n_groups])."""
    b, h, length, _ = x.shape
    xf = x.float()
    idx = grouping.index(length, x.device)
    n = grouping.count(length)
    row_amax = xf.abs().amax(dim=-1)  # [B, H, L]
    amax = torch.zeros(b, h, n, device=x.device, dtype=torch.float32)
    amax.scatter_reduce_(-1, idx.expand(b, h, length), row_amax, reduce="amax", include_self=True)
    scale = amax / INT8_MAX
    inv = torch.where(amax > 0, INT8_MAX / amax, torch.zeros_like(amax))
    codes = torch.round(xf * inv[:, :, idx, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return codes, scale


def expand_scale(scale: torch.Tensor, grouping: Grouping, length: int) -> torch.Tensor:
    """[B, H, n_groups] -> per-row scale [B, H, L]."""
    return scale[:, :, grouping.index(length, scale.device)]


def seq_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the sequence, fp32, [B, H, 1, D]. Zero for empty sequences."""
    if x.shape[2] == 0:
        return torch.zeros(*x.shape[:2], 1, x.shape[3], device=x.device, dtype=torch.float32)
    return x.float().mean(dim=2, keepdim=True)


def quantize_v_fp8(v: torch.Tensor, smooth_v: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """V [B, H, L, D] -> (e4m3 codes [B, H, L, D], fp32 scale [B, H, D], fp32 mean [B, H, D])."""
    mean = seq_mean(v) if smooth_v else torch.zeros(*v.shape[:2], 1, v.shape[3], device=v.device)
    vf = v.float() - mean
    amax = vf.abs().amax(dim=2) if v.shape[2] else torch.zeros(*v.shape[:2], v.shape[3], device=v.device)
    scale = amax / FP8_E4M3_MAX
    inv = torch.where(amax > 0, FP8_E4M3_MAX / amax, torch.zeros_like(amax))
    codes = (vf * inv[:, :, None, :]).clamp_(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    return codes, scale, mean.squeeze(2)

"""Launch settings of the attention kernel per (head dim, causal, P·V precision).

BLOCK_N stays 64: the reference's online softmax runs over 64-key tiles and K has one scale per 64 keys.
BLOCK_M divides 128 (one Q scale per 128 rows). Measured reasons for each choice are in benchmarks/NOTES.md.
"""

from __future__ import annotations

from typing import Optional

# (head_dim, causal, pv_fp8) -> (BLOCK_M, num_warps, num_stages); any key not listed falls back per head dim.
TILES = {
    # H100, N=8K, B=2, H=32, fp16 (TOPS for 128/4/3, 128/8/3, 128/8/4, 64/4/3): d64 419/399/402/404,
    # d64 causal 385/360/356/373, d128 553/476/504/466, d128 causal 500/466/443/398
    (64, False, False): (128, 4, 3),
    (64, True, False): (128, 4, 3),
    (128, False, False): (128, 4, 3),
    (128, True, False): (128, 4, 3),
    (256, False, False): (64, 4, 2),
    (256, True, False): (64, 4, 2),
}
BLOCK_N = 64

# Benchmarks set this to sweep settings: (BLOCK_M, num_warps, num_stages) used for every call while set.
OVERRIDE: Optional[tuple] = None


def tile_config(head_dim: int, causal: bool, pv_fp8: bool) -> tuple:
    if OVERRIDE is not None:
        return OVERRIDE
    fallback = {64: (128, 4, 3), 128: (128, 4, 3)}.get(head_dim, (64, 4, 2))
    return TILES.get((head_dim, causal, pv_fp8), fallback)

"""Shared test utilities: inputs, accuracy metrics and the bounds derived from the algorithm's precision."""

from __future__ import annotations

import torch

from sageattention.__main__ import cosine, rel_l1  # noqa: F401  (one definition of the metrics)

# Bounds against fp32 attention on randn-like inputs. They follow from what the quantized algorithm must lose:
# INT8 Q/K (per-block scales) perturbs logits by ~1% and FP16 P ~0.05%, giving rel-L1 ~0.013 and cos ~0.9999 at
# D=128 (measured on CPU); e4m3 P and V keep 3 mantissa bits each (~2.5% relative per operand), so the FP8 family
# lands near rel-L1 0.04 and cos 0.9993. The bounds leave ~2x margin over those measurements.
BOUNDS = {"fp16": {"cos": 0.9995, "rel_l1": 0.03}, "fp8": {"cos": 0.999, "rel_l1": 0.06}}


def make_qkv(b, hq, hkv, lq, lk, d, *, dtype=torch.float16, device="cpu", k_bias=0.0, layout="HND", gen=None):
    """Random non-zero inputs; k_bias adds a per-channel offset to K like real models have."""
    shape = lambda h, length: (b, h, length, d)  # noqa: E731
    q = torch.randn(shape(hq, lq), generator=gen)
    k = torch.randn(shape(hkv, lk), generator=gen) + k_bias * torch.randn(1, 1, 1, d, generator=gen)
    v = torch.randn(shape(hkv, lk), generator=gen)
    q, k, v = (x.to(device=device, dtype=dtype) for x in (q, k, v))
    if layout == "NHD":
        q, k, v = (x.transpose(1, 2).contiguous() for x in (q, k, v))
    return q, k, v


def to_hnd(x, layout):
    return x.transpose(1, 2) if layout == "NHD" else x

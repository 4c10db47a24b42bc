"""Random cases and shared checks for the CUDA kernel tests (no tests here; imported by tests/test_cuda_*.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
from dataclasses import dataclass

import torch

from sageattention.config import AttentionConfig, PV_ACCUM_DTYPES, default_sm_scale

LENGTHS = (1, 17, 64, 65, 127, 128, 129, 300, 1000)


@dataclass
class Case:
    b: int
    hq: int
    hkv: int
    lq: int
    lk: int
    d: int
    dtype: torch.dtype
    layout: str
    cfg: AttentionConfig
    k_bias: float

    def inputs(self, gen: torch.Generator, device="cuda"):
        def draw(h, length):
            x = torch.randn(self.b, length, h, self.d, generator=gen) if self.layout == "NHD" else \
                torch.randn(self.b, h, length, self.d, generator=gen)
            return x

        q, k, v = draw(self.hq, self.lq), draw(self.hkv, self.lk), draw(self.hkv, self.lk)
        bias = self.k_bias * torch.randn(self.d, generator=gen)
        k = k + bias
        q, k, v = (x.to(device=device, dtype=self.dtype) for x in (q, k, v))
        if self.layout == "NHD":  # HND views with [B, L, H, D] strides, as api.py hands them over
            q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        return q, k, v


def random_case(rng: random.Random, pv: str) -> Case:
    hkv = rng.choice((1, 2, 3))
    hq = hkv * rng.choice((1, 2, 4))
    lq, lk = rng.choice(LENGTHS), rng.choice(LENGTHS)
    if rng.random() < 0.1:
        lq, lk = rng.randint(1, 600), rng.randint(1, 600)
    dtype = rng.choice((torch.float16, torch.bfloat16))
    d = rng.choice((64, 128))
    causal = rng.choice((None, "top_left", "bottom_right"))
    cfg = AttentionConfig(
        sm_scale=default_sm_scale(d) * rng.choice((1.0, 1.0, 0.5, 2.0)),
        is_causal=causal is not None,
        causal_alignment=causal or "top_left",
        pv=pv,
        pv_accum_dtype=rng.choice(PV_ACCUM_DTYPES[pv]),
        qk_quant_gran=rng.choice(("per_warp", "per_thread")),
        smooth_k=rng.random() < 0.8,
        smooth_v=pv == "fp8" and rng.random() < 0.5,
        return_lse=True,
        head_dim=d,
    )
    return Case(rng.choice((1, 2)), hq, hkv, lq, lk, d, dtype, rng.choice(("HND", "NHD")), cfg,
                rng.choice((0.0, 0.0, 4.0, 20.0)))


def reference_with_kernel_mean(q, k, v, cfg, row_sum="p"):
    """reference.attention, smoothing K with the kernel's own mean (its sum order differs from torch's in the last
    bit, which can move a K code by one step and a logit by ~0.1: real, but not what these tests look for).
    row_sum: the kernel's denominator (its module's ROW_SUM)."""
    from sageattention import reference
    from sageattention.ops import quant

    if not cfg.smooth_k:
        return reference.attention(q, k, v, cfg, row_sum=row_sum)
    k_mean = quant.seq_mean(k)
    o, lse = reference.attention(q, k.float() - k_mean[:, :, None], v, dataclasses.replace(cfg, smooth_k=False),
                                 row_sum=row_sum)
    return o, (quant.finish_lse(lse, q, k_mean, cfg) if lse is not None else None)


def poison_allocator(device="cuda", mib=64):
    """Fill freed caching-allocator blocks with NaN so an output element the kernel never writes shows up."""
    junk = torch.full((mib * 1024 * 256,), float("nan"), device=device)
    del junk


class Metrics:
    """Worst values seen, written to $SAGEATTN_METRICS_OUT (a JSON file) for the benchmark notes."""

    def __init__(self):
        self.worst = {}

    def record(self, key: str, value: float, worse=max):
        old = self.worst.get(key)
        self.worst[key] = value if old is None else worse(old, value)

    def dump(self):
        path = os.environ.get("SAGEATTN_METRICS_OUT")
        if path:
            existing = json.load(open(path)) if os.path.exists(path) else {}
            existing.update(self.worst)
            json.dump(existing, open(path, "w"), indent=1, sort_keys=True)


def cuda_backend_or_skip(name: str):
    """The backend module sageattention.ops.<name>, or a pytest skip naming why it cannot run here."""
    import importlib

    import pytest

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    module = importlib.import_module(f"sageattention.ops.{name}")
    reason = module.available(torch.device("cuda"))
    if reason is not None:
        pytest.skip(reason)
    return module


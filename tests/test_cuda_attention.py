"""The sm80 (INT8 Q·Kᵀ + FP16 P·V) and sm89 (INT8 Q·Kᵀ + FP8 P·V) CUDA kernels against reference.py (same
quantized semantics, tight bounds) and against fp32 attention (what quantization must lose).

Kernel vs reference (row_sum by the module's ROW_SUM: sm80 sums the 16-bit P on the tensor cores): differences
come only from exp2.approx, the order of fp32 sums, fp16 accumulation inside the mma, the K mean's summation order
and, in sm80's fp32 mode, P exceeding 1 by up to 2^8 between rescales (a relative shift that fp16 rounding keeps),
so rel-L1 stays far below the quantization error itself.
Kernel vs fp32: the kernel may lose at most what reference.py loses on the same inputs, plus that same small
slack; for the FP8 family that is the bound we state (e4m3 P and V lose ~2-3% relative on randn)."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from sageattention import reference
from sageattention.config import AttentionConfig, default_sm_scale

from test_cuda_support import Metrics, cuda_backend_or_skip, poison_allocator, random_case, reference_with_kernel_mean
from helpers import cosine, rel_l1

pytestmark = pytest.mark.gpu

BACKENDS = {"sm80": "fp16", "sm89": "fp8"}
N_RANDOM = 220
# Kernel vs reference.py, rel-L1. fp32 accumulation: rounding of the fp16 output dominates (~2e-4); fp16 partial or
# whole accumulators round every mma step instead of every tile; e4m3 P flips to the neighbouring code (12% step)
# when exp2.approx lands across a rounding boundary.
SAME_SEMANTICS_RL1 = {"fp32": 2e-3, "fp16+fp32": 4e-3, "fp16": 8e-3, "fp32+fp32": 4e-3, "fp32+fp16": 6e-3}
metrics = Metrics()


def _backend(name):
    return cuda_backend_or_skip(name)


@pytest.fixture(scope="module", autouse=True)
def _dump_metrics():
    yield
    metrics.dump()


def _check_against_reference(name, case, q, k, v):
    module = _backend(name)
    poison_allocator()
    o, lse = module.forward(q, k, v, case.cfg)
    ref_o, ref_lse = reference_with_kernel_mean(q, k, v, case.cfg, module.ROW_SUM)
    assert o.shape == ref_o.shape and o.dtype == q.dtype
    assert not torch.isnan(o).any(), f"NaN in output ({case})"
    rl1 = rel_l1(o, ref_o) if ref_o.abs().sum() > 0 else float((o - ref_o).abs().max())
    bound = SAME_SEMANTICS_RL1[case.cfg.pv_accum_dtype]
    if q.dtype == torch.bfloat16:
        bound = max(bound, 4e-3)  # bf16 output rounding (8 bits) dominates
    metrics.record(f"{name}/vs_reference_rel_l1/{case.cfg.pv_accum_dtype}", rl1)
    assert rl1 <= bound, f"rel-L1 vs reference {rl1:.2e} > {bound:.0e} ({case})"
    seen = torch.isfinite(ref_lse)
    assert torch.equal(seen, torch.isfinite(lse)), "rows without keys must give LSE -inf, others finite"
    lse_err = float((lse[seen] - ref_lse[seen]).abs().max()) if seen.any() else 0.0
    metrics.record(f"{name}/lse_abs_err", lse_err)
    assert lse_err <= 2e-3 * max(1.0, float(ref_lse[seen].abs().max()) if seen.any() else 1.0)
    return o, ref_o


@pytest.mark.parametrize("name", BACKENDS)
def test_random_cases_match_reference(name):
    _backend(name)
    rng = random.Random(torch.seed())
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    for _ in range(N_RANDOM):
        case = random_case(rng, BACKENDS[name])
        q, k, v = case.inputs(gen)
        _check_against_reference(name, case, q, k, v)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("k_bias", [0.0, 20.0])
@pytest.mark.parametrize("d", [64, 128])
def test_accuracy_against_fp32(name, k_bias, d):
    """Loses no more than reference.py does on the same inputs (+ the same-semantics slack)."""
    module = _backend(name)
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    b, h, n = 2, 4, 1000
    q = torch.randn(b, h, n, d, generator=gen)
    k = torch.randn(b, h, n, d, generator=gen) + k_bias * torch.randn(d, generator=gen)
    v = torch.randn(b, h, n, d, generator=gen)
    q, k, v = (x.cuda().half() for x in (q, k, v))
    exact, _ = reference.exact_attention(q, k, v)
    for accum in ("fp32", "fp16+fp32") if name == "sm80" else ("fp32+fp32", "fp32+fp16"):
        cfg = AttentionConfig(sm_scale=default_sm_scale(d), pv=BACKENDS[name], pv_accum_dtype=accum,
                              qk_quant_gran="per_thread", head_dim=d)
        o, _ = module.forward(q, k, v, cfg)
        ref, _ = reference.attention(q, k, v, cfg, row_sum=module.ROW_SUM)
        cos_k, rl1_k, rl1_r = cosine(o, exact), rel_l1(o, exact), rel_l1(ref, exact)
        metrics.record(f"{name}/vs_fp32_cos/{accum}/bias{k_bias}", cos_k, worse=min)
        metrics.record(f"{name}/vs_fp32_rel_l1/{accum}/bias{k_bias}", rl1_k)
        assert rl1_k <= rl1_r + SAME_SEMANTICS_RL1[accum], (accum, rl1_k, rl1_r)
        if name == "sm80":
            assert cos_k >= 0.9995 and rl1_k <= 0.03, (accum, cos_k, rl1_k)
        else:  # the FP8 family: reference.py itself lands near rel-L1 0.03-0.04 / cos 0.9993
            assert cos_k >= cosine(ref, exact) - 2e-4, (accum, cos_k)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("lq,lk", [(1, 1), (17, 17), (1000, 1000), (4097, 4097), (1, 4097), (4097, 17)])
@pytest.mark.parametrize("alignment", [None, "top_left", "bottom_right"])
def test_awkward_lengths(name, lq, lk, alignment):
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    rng = random.Random(torch.seed())
    case = random_case(rng, BACKENDS[name])
    cfg = dataclasses.replace(case.cfg, is_causal=alignment is not None, causal_alignment=alignment or "top_left")
    case = dataclasses.replace(case, lq=lq, lk=lk, cfg=cfg, b=1, hq=2, hkv=1)
    q, k, v = case.inputs(gen)
    _check_against_reference(name, case, q, k, v)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("scale", [1e-3, 3000.0])
def test_no_nan_at_fp16_extremes(name, scale):
    """Tiny (~1e-3) or huge (up to ~1.5e4) Q/K/V quantize, exponentiate and accumulate without inf or NaN."""
    module = _backend(name)
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    q, k, v = (torch.randn(1, 2, 333, 128, generator=gen).mul(scale).clamp(-6e4, 6e4).cuda().half() for _ in range(3))
    for accum in ("fp32",) if name == "sm80" else ("fp32+fp32", "fp32+fp16"):
        cfg = AttentionConfig(sm_scale=default_sm_scale(128), pv=BACKENDS[name], pv_accum_dtype=accum,
                              qk_quant_gran="per_thread", return_lse=True, head_dim=128, is_causal=True)
        o, lse = module.forward(q, k, v, cfg)
        assert torch.isfinite(o).all() and torch.isfinite(lse).all(), accum
        ref, _ = reference_with_kernel_mean(q, k, v, cfg, module.ROW_SUM)
        assert rel_l1(o, ref) <= 1e-2, (accum, rel_l1(o, ref))


@pytest.mark.parametrize("name", BACKENDS)
def test_no_overflow_for_large_fp16_inputs(name):
    """Uniform fp16 inputs up to +-60000 (logits near 1e11 in base 2): finite, a convex combination of V rows."""
    module = _backend(name)
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    q, k, v = ((torch.rand(1, 4, 1000, 128, generator=gen) * 2 - 1).mul(60000).cuda().half() for _ in range(3))
    for accum in ("fp32",) if name == "sm80" else ("fp32+fp32", "fp32+fp16"):
        for causal in (False, True):
            cfg = AttentionConfig(sm_scale=default_sm_scale(128), pv=BACKENDS[name], pv_accum_dtype=accum,
                                  qk_quant_gran="per_thread", return_lse=True, head_dim=128, is_causal=causal)
            o, lse = module.forward(q, k, v, cfg)
            assert torch.isfinite(o).all() and torch.isfinite(lse).all(), (accum, causal)
            assert o.abs().max() <= v.abs().max() * 1.001, (accum, causal)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("lk", [1, 3, 65])
def test_all_scores_far_below_zero(name, lk):
    """Every score near -45 (base 2), and lanes of a row that hold no key (per-thread K groups with 1-3 keys): the
    row max must come from the keys alone, or P underflows and the rows come out zero."""
    module = _backend(name)
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    u = torch.randn(64, generator=gen)
    u = 8 * u / u.norm()  # every key near u, every query near -4u: logits near -256 / 8 = -32 (base e)
    k = u + 0.3 * torch.randn(1, 2, lk, 64, generator=gen)
    q = -4 * u + 0.1 * torch.randn(1, 2, 128, 64, generator=gen)
    v = torch.randn(1, 2, lk, 64, generator=gen)
    q, k, v = (x.cuda().half() for x in (q, k, v))
    cfg = AttentionConfig(sm_scale=default_sm_scale(64), pv=BACKENDS[name],
                          pv_accum_dtype="fp32" if name == "sm80" else "fp32+fp16", qk_quant_gran="per_thread",
                          smooth_k=False, head_dim=64, return_lse=True)
    o, lse = module.forward(q, k, v, cfg)
    ref, ref_lse = reference_with_kernel_mean(q, k, v, cfg, module.ROW_SUM)
    assert float(ref_lse.max()) < -20, "the case must put every score far below zero"
    assert rel_l1(o, ref) <= SAME_SEMANTICS_RL1[cfg.pv_accum_dtype], rel_l1(o, ref)
    assert float((lse - ref_lse).abs().max()) <= 2e-3 * float(ref_lse.abs().max())


@pytest.mark.parametrize("name", BACKENDS)
def test_gqa_equals_repeated_kv_heads(name):
    module = _backend(name)
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    q = torch.randn(2, 8, 200, 64, generator=gen).cuda().half()
    k, v = (torch.randn(2, 2, 300, 64, generator=gen).cuda().half() for _ in range(2))
    cfg = AttentionConfig(sm_scale=0.125, pv=BACKENDS[name], pv_accum_dtype="fp32" if name == "sm80" else "fp32+fp32",
                          qk_quant_gran="per_warp", head_dim=64)
    o, _ = module.forward(q, k, v, cfg)
    o_rep, _ = module.forward(q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1), cfg)
    torch.testing.assert_close(o, o_rep, rtol=0, atol=0)  # same codes, same scales, same kernel arithmetic


def test_sm80_public_function_routes_to_kernel():
    _backend("sm80")
    import sageattention as sa

    q, k, v = (torch.randn(1, 300, 2, 96, device="cuda", dtype=torch.float16) for _ in range(3))
    o = sa.sageattn_qk_int8_pv_fp16_cuda(q, k, v, tensor_layout="NHD", is_causal=True)
    exact, _ = reference.exact_attention(*(x.transpose(1, 2) for x in (q, k, v)), is_causal=True)
    assert o.shape == q.shape and cosine(o.transpose(1, 2), exact) >= 0.9995


def test_sm89_public_function_routes_to_kernel():
    _backend("sm89")
    import sageattention as sa

    q, k, v = (torch.randn(1, 2, 300, 40, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    o, lse = sa.sageattn_qk_int8_pv_fp8_cuda(q, k, v, return_lse=True, smooth_v=True)
    exact, exact_lse = reference.exact_attention(q, k, v)
    assert cosine(o, exact) >= 0.998
    assert float((lse - exact_lse).abs().max()) < 0.05

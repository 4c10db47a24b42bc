"""The PyTorch reference (the executable specification) against exact fp32 attention, on CPU."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import sageattention as sa
from sageattention import reference
from sageattention.config import LOG2E, PV_ACCUM_DTYPES, AttentionConfig
from sageattention.quant import spec

from helpers import BOUNDS, cosine, make_qkv, rel_l1, to_hnd

MODES = [("fp16", acc) for acc in PV_ACCUM_DTYPES["fp16"]] + [("fp8", acc) for acc in PV_ACCUM_DTYPES["fp8"]]
GRANS = ["per_block", "per_warp", "per_thread"]


def _cfg(d, **kw):
    kw.setdefault("sm_scale", d**-0.5)
    return AttentionConfig(head_dim=d, **kw)


def _assert_close_to_exact(out, ref, pv):
    assert torch.isfinite(out).all()
    bound = BOUNDS[pv]
    c, l1 = cosine(out, ref), rel_l1(out, ref)
    assert c >= bound["cos"], f"cos {c:.6f} < {bound['cos']}"
    assert l1 <= bound["rel_l1"], f"rel-L1 {l1:.4f} > {bound['rel_l1']}"


@pytest.mark.parametrize("pv,accum", MODES)
@pytest.mark.parametrize("gran", GRANS)
@pytest.mark.parametrize("k_bias", [0.0, 10.0])
def test_every_mode_matches_fp32(seed, pv, accum, gran, k_bias):
    q, k, v = make_qkv(1, 4, 4, 1000, 1000, 128, k_bias=k_bias)
    cfg = _cfg(128, pv=pv, pv_accum_dtype=accum, qk_quant_gran=gran, smooth_v=(pv == "fp8"))
    out, _ = reference.attention(q, k, v, cfg)
    ref, _ = reference.exact_attention(q, k, v)
    _assert_close_to_exact(out, ref, pv)


def test_sageattn_cpu_issue_target(seed):
    """The foundation issue's acceptance case: B=1, H=4, N=1000, D=128 fp16 randn, cos >= 0.9995."""
    q, k, v = make_qkv(1, 4, 4, 1000, 1000, 128)
    ref, _ = reference.exact_attention(q, k, v)
    assert cosine(sa.sageattn(q, k, v), ref) >= 0.9995
    for accum in PV_ACCUM_DTYPES["fp16"]:
        for gran in ("per_warp", "per_thread"):
            out = sa.sageattn_qk_int8_pv_fp16_cuda(q, k, v, qk_quant_gran=gran, pv_accum_dtype=accum)
            assert cosine(out, ref) >= 0.9995, (gran, accum)


def test_smoothing_matters_for_biased_k(seed):
    """Without smoothing, a large per-channel K bias eats the INT8 range: smoothing must do measurably better."""
    q, k, v = make_qkv(1, 2, 2, 512, 512, 64, k_bias=40.0)
    ref, _ = reference.exact_attention(q, k, v)
    smooth, _ = reference.attention(q, k, v, _cfg(64, smooth_k=True))
    raw, _ = reference.attention(q, k, v, _cfg(64, smooth_k=False))
    assert rel_l1(smooth, ref) < 0.5 * rel_l1(raw, ref)


def test_online_softmax_equals_untiled_quantized_attention(seed):
    """The tiled online softmax computes the same function as softmax over the whole quantized score row."""
    b, h, n, d = 1, 2, 300, 64
    q, k, v = make_qkv(b, h, h, n, n, d, dtype=torch.float32)
    cfg = _cfg(d, smooth_k=True, qk_quant_gran="per_thread")
    out, lse = reference.attention(q, k, v, dataclass_replace(cfg, return_lse=True))
    km = k.mean(dim=2, keepdim=True)
    qg, kg = spec.q_grouping("per_thread"), spec.k_grouping("per_thread")
    q8, sq = spec.quantize_int8(q, qg)
    k8, sk = spec.quantize_int8(k - km, kg)
    s2 = (q8.double() @ k8.double().transpose(-1, -2)) * spec.expand_scale(sq, qg, n)[..., None].double() \
        * spec.expand_scale(sk, kg, n)[:, :, None, :].double() * (cfg.sm_scale * LOG2E)
    p = torch.softmax(s2 * math.log(2), dim=-1)
    untiled = p @ v.double()
    assert rel_l1(out, untiled) < 2e-3  # only P's per-tile rounding to V's dtype (fp32 here) and fp32 sums differ
    lse_untiled = torch.logsumexp(s2 * math.log(2), dim=-1) + (q.double() @ km.double().transpose(-1, -2)).squeeze(-1) * cfg.sm_scale
    assert (lse.double() - lse_untiled).abs().max() < 1e-4


def dataclass_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


@pytest.mark.parametrize("d", [32, 64, 96, 128, 192, 256])
@pytest.mark.parametrize("length", [1, 17, 1000])
def test_head_dims_and_lengths(seed, d, length):
    q, k, v = make_qkv(1, 2, 2, length, length, d)
    ref, _ = reference.exact_attention(q, k, v)
    _assert_close_to_exact(sa.sageattn(q, k, v), ref, "fp16")


CAUSAL_CASES = [(a, lq, lk) for a in ("top_left", "bottom_right")
                for lq, lk in ((1, 1), (17, 17), (17, 300), (300, 17), (1000, 1000), (1, 1000))
                if not (a == "bottom_right" and lq > lk)]  # that one is a rejected input (test_validation)


@pytest.mark.parametrize("alignment,lq,lk", CAUSAL_CASES)
def test_causal_alignments(seed, alignment, lq, lk):
    q, k, v = make_qkv(1, 2, 2, lq, lk, 64, k_bias=3.0)
    ref, ref_lse = reference.exact_attention(q, k, v, is_causal=True, causal_alignment=alignment)
    out, lse = sa.sageattn(q, k, v, is_causal=True, causal_alignment=alignment, return_lse=True)
    _assert_close_to_exact(out, ref, "fp16")
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse))
    finite = torch.isfinite(ref_lse)
    assert (lse[finite] - ref_lse[finite]).abs().max() < 0.05


def test_causal_masks_future_keys(seed):
    """Values a query must not see cannot change its output (both alignments). Only V changes: future K
    legitimately moves the per-block K scale and mean, which is part of the quantized algorithm."""
    q, k, v = make_qkv(1, 2, 2, 64, 96, 64)
    row = 40
    for alignment, offset in (("top_left", 0), ("bottom_right", 32)):
        out = sa.sageattn(q, k, v, is_causal=True, causal_alignment=alignment)
        v2 = v.clone()
        v2[:, :, row + offset + 1:] = 7.0
        out2 = sa.sageattn(q, k, v2, is_causal=True, causal_alignment=alignment)
        assert torch.equal(out2[:, :, : row + 1], out[:, :, : row + 1]), alignment
        assert not torch.equal(out2[:, :, -1], out[:, :, -1])


@pytest.mark.parametrize("hq,hkv", [(8, 2), (8, 1), (6, 3)])
def test_gqa_equals_repeated_heads(seed, hq, hkv):
    q, k, v = make_qkv(2, hq, hkv, 100, 130, 64, k_bias=2.0)
    out = sa.sageattn(q, k, v)
    g = hq // hkv
    rep = sa.sageattn(q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1))
    assert torch.equal(out, rep)  # same per-(batch, kv head) K mean and scales either way
    ref, _ = reference.exact_attention(q, k, v)
    _assert_close_to_exact(out, ref, "fp16")


@pytest.mark.parametrize("func", [sa.sageattn, sa.sageattn_qk_int8_pv_fp8_cuda])
def test_layouts_agree(seed, func):
    q, k, v = make_qkv(2, 4, 2, 77, 77, 64)
    hnd = func(q, k, v, tensor_layout="HND")
    nhd = func(*(x.transpose(1, 2).contiguous() for x in (q, k, v)), tensor_layout="NHD")
    assert nhd.shape == (2, 77, 4, 64)
    assert torch.equal(to_hnd(nhd, "NHD"), hnd)


def test_lse_matches_logsumexp(seed):
    q, k, v = make_qkv(2, 4, 2, 200, 333, 128, k_bias=20.0)
    scale = 0.07
    _, lse = sa.sageattn(q, k, v, sm_scale=scale, return_lse=True)
    logits = (q.float() @ k.float().repeat_interleave(2, dim=1).transpose(-1, -2)) * scale
    expected = torch.logsumexp(logits, dim=-1)
    assert lse.dtype == torch.float32 and lse.shape == (2, 4, 200)
    # The smoothing correction q·mean(K) is ~20x larger than this bound for this K bias, so dropping it fails.
    assert (lse - expected).abs().max() < 0.05


def test_bf16_inputs(seed):
    q, k, v = make_qkv(1, 2, 2, 257, 257, 128, dtype=torch.bfloat16, k_bias=5.0)
    ref, _ = reference.exact_attention(q, k, v)
    out = sa.sageattn(q, k, v)
    assert out.dtype == torch.bfloat16
    _assert_close_to_exact(out, ref, "fp16")


def test_attn_mask_bool_and_additive(seed):
    q, k, v = make_qkv(1, 2, 2, 50, 70, 64)
    keep = torch.rand(1, 1, 50, 70) > 0.3
    keep[..., 0] = True
    ref, _ = reference.exact_attention(q, k, v, attn_mask=keep)
    out = sa.sageattn_qk_int8_pv_fp16_triton(q, k, v, attn_mask=keep)
    _assert_close_to_exact(out, ref, "fp16")
    additive = torch.where(keep, 0.0, float("-inf")).expand(1, 2, 50, 70)
    assert torch.equal(sa.sageattn_qk_int8_pv_fp16_triton(q, k, v, attn_mask=additive), out)


def test_fully_masked_rows_give_zeros_not_nan(seed):
    q, k, v = make_qkv(1, 1, 1, 4, 8, 64)
    keep = torch.ones(4, 8, dtype=torch.bool)
    keep[2] = False
    out, lse = sa.sageattn_qk_int8_pv_fp16_triton(q, k, v, attn_mask=keep, return_lse=True)
    assert torch.isfinite(out).all() and torch.all(out[0, 0, 2] == 0)
    assert lse[0, 0, 2] == float("-inf") and torch.isfinite(lse[0, 0, [0, 1, 3]]).all()


def test_varlen_equals_per_sequence_calls(seed):
    lens_q, lens_k = [5, 0, 130, 17], [9, 4, 130, 1]
    hq, hkv, d = 4, 2, 64
    q = torch.randn(sum(lens_q), hq, d).half()
    k = torch.randn(sum(lens_k), hkv, d).half() + 3
    v = torch.randn(sum(lens_k), hkv, d).half()
    cu = lambda lens: torch.tensor([0] + list(itertools.accumulate(lens)), dtype=torch.int32)  # noqa: E731
    for causal in (False, True):
        out, lse = sa.sageattn_varlen(q, k, v, cu(lens_q), cu(lens_k), max(lens_q), max(lens_k), is_causal=causal, return_lse=True)
        assert out.shape == q.shape and lse.shape == (hq, sum(lens_q))
        cq, ck = cu(lens_q).tolist(), cu(lens_k).tolist()
        for i in range(len(lens_q)):
            if lens_q[i] == 0:
                continue
            one = lambda x, c: x[c[i]:c[i + 1]][None]  # noqa: E731  [1, L, H, D]
            o, l = sa.sageattn(one(q, cq), one(k, ck), one(v, ck), tensor_layout="NHD", is_causal=causal, return_lse=True)
            assert torch.equal(out[cq[i]:cq[i + 1]], o[0])
            assert torch.equal(lse[:, cq[i]:cq[i + 1]], l[0])


def test_empty_inputs_give_empty_results():
    d = 64
    out = sa.sageattn(torch.randn(0, 2, 5, d).half(), torch.randn(0, 2, 5, d).half(), torch.randn(0, 2, 5, d).half())
    assert out.shape == (0, 2, 5, d)
    out, lse = sa.sageattn(torch.randn(1, 2, 0, d).half(), torch.randn(1, 2, 5, d).half(), torch.randn(1, 2, 5, d).half(), return_lse=True)
    assert out.shape == (1, 2, 0, d) and lse.shape == (1, 2, 0)
    out, lse = sa.sageattn(torch.randn(1, 2, 3, d).half(), torch.randn(1, 2, 0, d).half(), torch.randn(1, 2, 0, d).half(), return_lse=True)
    assert torch.all(out == 0) and torch.all(lse == float("-inf"))


@pytest.mark.parametrize("gran,warp_rows", [("per_block", 32), ("per_warp", 32), ("per_warp", 16), ("per_thread", 32), ("per_thread", 16)])
def test_quantization_groups_follow_the_spec(seed, gran, warp_rows):
    x = torch.randn(2, 3, 200, 40) * torch.rand(1, 1, 200, 1) * 10
    for grouping in (spec.q_grouping(gran, warp_rows), spec.k_grouping(gran)):
        codes, scale = spec.quantize_int8(x, grouping)
        idx = grouping.index(200)
        assert scale.shape == (2, 3, grouping.count(200))
        for g in idx.unique().tolist():
            rows = idx == g
            assert torch.allclose(scale[:, :, g], x[:, :, rows].abs().amax(dim=(-1, -2)) / 127)
        deq = codes.float() * scale[:, :, idx, None]
        # half a step, plus the fp32 rounding of x * (127 / amax) and of codes * scale (~1e-5 of a step)
        assert (deq - x).abs().le(scale[:, :, idx, None] * (0.5 + 1e-4)).all()
        assert codes.abs().max() == 127


def test_fp8_v_quantization_per_channel(seed):
    v = torch.randn(1, 2, 300, 64) * torch.linspace(0.1, 30, 64)
    codes, scale, mean = spec.quantize_v_fp8(v, smooth_v=True)
    assert torch.allclose(mean, v.mean(dim=2))
    assert torch.allclose(scale, (v - v.mean(dim=2, keepdim=True)).abs().amax(dim=2) / 448)
    deq = codes.float() * scale[:, :, None, :] + mean[:, :, None, :]
    assert rel_l1(deq, v) < 0.04  # e4m3: 3 mantissa bits


def test_long_sequence_memory_stays_bounded():
    """N=32K on CPU without ever holding N x N scores: the peak RSS stays far below the 4 GiB an fp32
    32K x 32K score matrix would need. Runs in a subprocess to measure its own peak."""
    import subprocess
    import sys

    code = (
        "import resource, torch, sageattention as sa\n"
        "torch.manual_seed(0)\n"
        "q, k, v = (torch.randn(1, 1, 32768, 32).half() for _ in range(3))\n"
        "o = sa.sageattn(q, k, v, is_causal=True)\n"
        "assert torch.isfinite(o).all()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    peak_mb = int(res.stdout.strip().splitlines()[-1])
    assert peak_mb < 2048, f"peak RSS {peak_mb} MiB"


@pytest.mark.parametrize("k_bias", [0.0, 10.0])
def test_row_sum_of_rounded_p_is_as_accurate(seed, k_bias):
    """row_sum="pv_operand" (the sm90 two-level kernel's denominator: the e4m3 P codes P·V used, summed on the
    tensor cores) is a different function from the fp32 sum of p, and no less accurate against fp32 attention."""
    q, k, v = make_qkv(1, 4, 4, 1000, 1000, 128, k_bias=k_bias)
    cfg = _cfg(128, pv="fp8", pv_accum_dtype="fp32+fp32", qk_quant_gran="per_thread", return_lse=True)
    exact, _ = reference.exact_attention(q, k, v)
    by_p, lse_p = reference.attention(q, k, v, cfg, key_tile=128, warp_rows=16)
    by_codes, lse_codes = reference.attention(q, k, v, cfg, key_tile=128, warp_rows=16, row_sum="pv_operand")
    assert not torch.equal(by_p, by_codes)
    assert rel_l1(by_codes, exact) <= rel_l1(by_p, exact) + 1e-3
    assert cosine(by_codes, exact) >= cosine(by_p, exact) - 1e-5
    assert float((lse_p - lse_codes).abs().max()) < 0.02  # log of a sum that moved by e4m3 rounding only
    with pytest.raises(ValueError, match="row_sum"):
        reference.attention(q, k, v, cfg, row_sum="fp8")

"""Triton backend against the reference (same quantized semantics, tight bounds) and fp32 attention.

GPU tests carry the `gpu` marker. Tests named `test_interpret_*` run the same kernels on CPU tensors under
TRITON_INTERPRET=1 (tests/test_triton_interpret.py starts them in a subprocess, since the variable must be
set before Triton compiles anything); in a normal session they skip.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

from sageattention import reference, sageattn, sageattn_qk_int8_pv_fp16_triton, sageattn_varlen
from sageattention.config import LOG2E, AttentionConfig
from sageattention.quant.spec import k_grouping, q_grouping, quantize_int8, seq_mean

from helpers import cosine, make_qkv, rel_l1

triton = pytest.importorskip("triton")

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
interpret_only = pytest.mark.skipif(not INTERPRET, reason="runs under TRITON_INTERPRET=1 (test_triton_interpret.py)")
DEV = "cuda"
# Against the reference the only differences are fp32 summation order, the K mean's rounding (a rare one-code
# flip of K, which moves a row's logits by one quantization step) and the rounding of P and O to the 16-bit
# type: about one ulp of that type on average, 10x below the distance to fp32 attention.
TIGHT_REL_L1 = {torch.float16: 3e-3, torch.bfloat16: 1.2e-2}
EXACT = {"cos": 0.9995, "rel_l1": 0.03}


def _backend():
    from sageattention.triton import backend

    return backend


def _poison(*shapes_dtypes, device):
    """Fill the allocator's next blocks with NaN so outputs the kernel never writes show up."""
    for shape, dtype in shapes_dtypes:
        torch.full(shape, float("nan"), dtype=dtype, device=device)


def _cfg(d, causal=None, lse=False, smooth_k=True, mask=None, pv="fp16", accum="fp32", smooth_v=False):
    return AttentionConfig(
        sm_scale=d ** -0.5, is_causal=causal is not None, causal_alignment=causal or "top_left", pv=pv,
        pv_accum_dtype=accum, return_lse=lse, smooth_k=smooth_k, attn_mask=mask, head_dim=d, smooth_v=smooth_v,
    )


def _check_against_reference(q, k, v, cfg, *, exact=True):
    """q/k/v HND views; runs the backend with poisoned outputs, compares to reference.py and fp32 attention."""
    b, hq, lq, d = q.shape
    _poison(((b, hq, lq, d), q.dtype), ((b, hq, lq), torch.float32), device=q.device)
    o, lse = _backend().forward(q, k, v, cfg)
    ro, rlse = reference.attention(q, k, v, cfg)
    assert o.shape == ro.shape and o.dtype == q.dtype
    assert not torch.isnan(o).any(), "unwritten or NaN outputs"
    err = rel_l1(o, ro) if ro.abs().sum() > 0 else float((o.float() - ro.float()).abs().max())
    assert err <= TIGHT_REL_L1[q.dtype], f"rel-L1 vs reference {err:.2e}"
    if cfg.return_lse:
        assert lse.shape == (b, hq, lq) and not torch.isnan(lse).any()
        assert torch.equal(torch.isinf(lse), torch.isinf(rlse))
        _assert_lse_close(lse, rlse)
    else:
        assert lse is None
    if exact and cfg.pv == "fp16":  # callers pass exact=False for unsmoothed biased K (what smoothing fixes)
        eo, else_ = reference.exact_attention(
            q, k, v, is_causal=cfg.is_causal, causal_alignment=cfg.causal_alignment, sm_scale=cfg.sm_scale,
            attn_mask=cfg.attn_mask,
        )
        assert cosine(o, eo) >= EXACT["cos"] and rel_l1(o, eo) <= EXACT["rel_l1"], (cosine(o, eo), rel_l1(o, eo))
        if cfg.return_lse:
            fin = torch.isfinite(else_)
            assert float((lse[fin] - else_[fin]).abs().max()) < 0.05
    return o, lse


def _assert_lse_close(lse, ref):
    """fp32 rounding everywhere; a one-code K flip may move a row by up to ~0.05 of a large logit."""
    fin = torch.isfinite(ref)
    diff = (lse[fin] - ref[fin]).abs()
    if diff.numel():
        assert float(diff.mean()) < 1e-3 and float(diff.max()) < 5e-2, (float(diff.mean()), float(diff.max()))


def _random_cases(n, seed=20261125):
    """Shapes drawn once (stable test ids); inputs are drawn fresh each run."""
    rng = random.Random(seed)
    lengths = (1, 17, 64, 100, 128, 257, 1000, 4097)
    heads = ((1, 1), (4, 4), (8, 2), (6, 1))
    cases = []
    while len(cases) < n:
        lq, lk = rng.choice(lengths), rng.choice(lengths)
        if max(lq, lk) == 4097 and min(lq, lk) > 257:
            continue  # keep the reference's run time bounded
        causal = rng.choice((None, "top_left", "bottom_right"))
        if causal == "bottom_right" and lq > lk:
            lq, lk = lk, lq
        hq, hkv = rng.choice(heads)
        cases.append(dict(
            b=rng.choice((1, 2)), hq=hq, hkv=hkv, lq=lq, lk=lk, d=rng.choice((64, 128, 256)),
            dtype=rng.choice(("float16", "bfloat16")), layout=rng.choice(("HND", "NHD")), causal=causal,
            k_bias=rng.choice((0.0, 0.0, 8.0)), lse=rng.random() < 0.4, smooth_k=rng.random() < 0.85,
        ))
    return cases


def _case_id(c):
    return (f"b{c['b']}h{c['hq']}-{c['hkv']}q{c['lq']}k{c['lk']}d{c['d']}-{c['dtype'][:2]}-{c['layout']}-"
            f"{c['causal'] or 'full'}-bias{int(c['k_bias'])}{'-lse' if c['lse'] else ''}{'' if c['smooth_k'] else '-nosmooth'}")


RANDOM_CASES = _random_cases(216)


@pytest.mark.gpu
@pytest.mark.parametrize("case", RANDOM_CASES, ids=_case_id)
def test_random_case_matches_reference_and_fp32(case, seed):
    q, k, v = make_qkv(case["b"], case["hq"], case["hkv"], case["lq"], case["lk"], case["d"], device=DEV,
                       dtype=getattr(torch, case["dtype"]), k_bias=case["k_bias"], layout=case["layout"])
    if case["layout"] == "NHD":
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # strided HND views of NHD memory
    cfg = _cfg(case["d"], case["causal"], case["lse"], case["smooth_k"])
    o, _ = _check_against_reference(q, k, v, cfg, exact=case["smooth_k"] or case["k_bias"] == 0)
    assert o.stride() == q.stride(), "output keeps the caller's memory layout"


@pytest.mark.gpu
@pytest.mark.parametrize("d", (32, 40, 64, 80, 96, 128, 160, 192, 256))
@pytest.mark.parametrize("layout", ("HND", "NHD"))
def test_api_head_dims(d, layout, seed):
    q, k, v = make_qkv(2, 4, 2, 300, 333, d, device=DEV, layout=layout, k_bias=4.0)
    o, lse = sageattn(q, k, v, tensor_layout=layout, is_causal=True, return_lse=True, backend="triton")
    to_hnd = (lambda x: x.transpose(1, 2)) if layout == "NHD" else (lambda x: x)
    eo, else_ = reference.exact_attention(to_hnd(q), to_hnd(k), to_hnd(v), is_causal=True)
    assert o.shape == q.shape
    assert cosine(to_hnd(o), eo) >= EXACT["cos"] and rel_l1(to_hnd(o), eo) <= EXACT["rel_l1"]
    assert float((lse - else_).abs().max()) < 0.05


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ("bool", "float"))
@pytest.mark.parametrize("shape", ("b1ln", "ln", "bhln"))
def test_masks(kind, shape, seed):
    b, hq, hkv, lq, lk, d = 2, 4, 2, 150, 1000, 128
    q, k, v = make_qkv(b, hq, hkv, lq, lk, d, device=DEV, k_bias=4.0)
    mshape = {"b1ln": (b, 1, lq, lk), "ln": (lq, lk), "bhln": (b, hq, lq, lk)}[shape]
    keep = torch.rand(mshape, device=DEV) > 0.3
    keep[..., 5, :] = False  # a row that sees no key: zeros and LSE -inf
    mask = keep if kind == "bool" else torch.where(keep, torch.randn(mshape, device=DEV), float("-inf"))
    cfg = _cfg(d, None, True, mask=mask)
    o, lse = _check_against_reference(q, k, v, cfg)
    assert (o[..., 5, :] == 0).all() and torch.isinf(lse[..., 5]).all()
    if q.is_cuda:  # the api sends CPU tensors to the reference
        assert torch.equal(sageattn_qk_int8_pv_fp16_triton(q, k, v, attn_mask=mask), o)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", (None, "top_left", "bottom_right"))
@pytest.mark.parametrize("d", (64, 128))
def test_varlen_matches_reference(causal, d, seed):
    lens_q = [1, 17, 300, 0, 1000, 64]
    lens_k = [1, 40, 300, 5, 1000, 4097] if causal != "top_left" else [1, 17, 300, 0, 1000, 64]
    if causal == "top_left":
        lens_k = [n + e for n, e in zip(lens_q, (0, 3, 0, 2, 50, 1))]
    cu_q = torch.tensor([0] + lens_q, device=DEV).cumsum(0).int()
    cu_k = torch.tensor([0] + lens_k, device=DEV).cumsum(0).int()
    hq, hkv = 8, 2
    q = torch.randn(sum(lens_q), hq, d, device=DEV, dtype=torch.float16)
    k = (torch.randn(sum(lens_k), hkv, d, device=DEV) + 6 * torch.randn(d, device=DEV)).half()
    v = torch.randn(sum(lens_k), hkv, d, device=DEV, dtype=torch.float16)
    cfg = _cfg(d, causal, lse=True)
    _poison(((sum(lens_q), hq, d), torch.float16), ((hq, sum(lens_q)), torch.float32), device=DEV)
    o, lse = _backend().forward_varlen(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), cfg)
    ro, rlse = reference.varlen_attention(q, k, v, cu_q, cu_k, cfg)
    assert not torch.isnan(o).any() and not torch.isnan(lse).any()
    assert rel_l1(o, ro) <= TIGHT_REL_L1[torch.float16]
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse))
    _assert_lse_close(lse, rlse)
    o_api, lse_api = (o, lse) if not q.is_cuda else sageattn_varlen(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), is_causal=causal is not None,
                                     causal_alignment=causal or "top_left", return_lse=True)
    assert torch.equal(o_api, o) and torch.equal(lse_api, lse)
    for i in range(len(lens_q)):  # each sequence against fp32 attention on its own
        qs, qe, ks, ke = cu_q[i].item(), cu_q[i + 1].item(), cu_k[i].item(), cu_k[i + 1].item()
        if qe - qs < 17 or ke == ks:
            continue
        hnd = lambda x, s, e: x[s:e].transpose(0, 1)[None]  # noqa: E731
        eo, _ = reference.exact_attention(hnd(q, qs, qe), hnd(k, ks, ke), hnd(v, ks, ke), is_causal=causal is not None,
                                          causal_alignment=causal or "top_left")
        assert cosine(hnd(o, qs, qe), eo) >= EXACT["cos"]


@pytest.mark.gpu
def test_no_overflow_for_large_fp16_inputs(seed):
    shape = (1, 4, 1000, 128)
    q, k, v = ((torch.rand(shape, device=DEV) * 2 - 1) * 60000 for _ in range(3))
    q, k, v = q.half(), k.half(), v.half()
    for causal in (False, True):
        o, lse = sageattn(q, k, v, is_causal=causal, return_lse=True, backend="triton")
        assert torch.isfinite(o).all() and torch.isfinite(lse).all()
        assert o.abs().max() <= v.abs().max() * 1.001  # a convex combination of V rows


@pytest.mark.gpu
@pytest.mark.parametrize("lk", (1, 17, 1000, 4097))
@pytest.mark.parametrize("varlen", (False, True))
def test_quantization_matches_spec(lk, varlen, seed):
    from sageattention.triton import ops

    q, k, _ = make_qkv(2, 4, 2, lk, lk, 128, device=DEV, k_bias=10.0)
    factor = 128 ** -0.5 * LOG2E
    if varlen:
        cu = torch.tensor([0, lk, 2 * lk], device=DEV, dtype=torch.int32)
        pack = lambda x: x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[3])  # noqa: E731
        q8, qs, k8, ks, km = ops.quant_qk(pack(q), pack(k), cu, cu, lk, lk, factor, True)
        q8 = q8.unflatten(0, (2, lk)).transpose(1, 2)
        k8 = k8.unflatten(0, (2, lk)).transpose(1, 2)
    else:
        q8, qs, k8, ks, km = ops.quant_qk(q, k, None, None, lk, lk, factor, True)
    rq8, rqs = quantize_int8(q, q_grouping("per_block"))
    mean = seq_mean(k)
    rk8, rks = quantize_int8(k.float() - mean, k_grouping("per_block"))
    assert torch.allclose(km, mean.squeeze(2), rtol=1e-5, atol=1e-5)
    assert torch.allclose(qs, rqs * factor, rtol=1e-6) and torch.allclose(ks, rks, rtol=1e-5)
    assert torch.equal(q8, rq8)  # same fp32 product, same round-to-nearest-even
    diff = (k8.int() - rk8.int()).abs()
    assert diff.max() <= 1 and diff.float().mean() < 1e-3  # the mean's rounding may flip a tie-near code


@pytest.mark.gpu
@pytest.mark.parametrize("accum", ("fp32+fp32", "fp32+fp16"))
@pytest.mark.parametrize("causal", (None, "bottom_right"))
@pytest.mark.parametrize("smooth_v", (False, True))
def test_fp8_pv_matches_reference(accum, causal, smooth_v, seed):
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 P·V needs sm_89+")
    q, k, v = make_qkv(2, 8, 2, 1000, 1000, 128, device=DEV, k_bias=5.0)
    v = v + 3.0  # a V offset is what smooth_v is for
    cfg = _cfg(128, causal, lse=True, pv="fp8", accum=accum, smooth_v=smooth_v)
    _poison(((2, 8, 1000, 128), torch.float16), device=DEV)
    o, lse = _backend().forward(q, k, v, cfg)
    ro, rlse = reference.attention(q, k, v, cfg)
    assert not torch.isnan(o).any()
    assert rel_l1(o, ro) <= 4e-3, rel_l1(o, ro)  # e4m3 P may round differently at a tie
    eo, _ = reference.exact_attention(q, k, v, is_causal=causal is not None, causal_alignment=causal or "top_left")
    assert cosine(o, eo) >= 0.999


@pytest.mark.gpu
def test_torch_compile_fullgraph(seed):
    q, k, v = make_qkv(1, 4, 4, 500, 500, 64, device=DEV, k_bias=3.0)
    mask = torch.rand(500, 500, device=DEV) > 0.2

    def f(q, k, v):
        return sageattn_qk_int8_pv_fp16_triton(q, k, v, attn_mask=mask, return_lse=True, is_causal=True)

    o, lse = torch.compile(f, fullgraph=True)(q, k, v)
    eo, else_ = f(q, k, v)
    assert torch.allclose(o.float(), eo.float(), atol=2e-3) and torch.allclose(lse, else_, atol=1e-3)


@pytest.mark.gpu
def test_opcheck(monkeypatch):
    from sageattention.triton import ops

    # opcheck wants eager and traced outputs bitwise equal; on Hopper at D=64 eager runs attention_sm90, which
    # agrees with the traced attention.py to fp32 rounding only (tests/test_triton_sm90.py bounds that)
    monkeypatch.setattr(ops, "USE_SM90_KERNEL", False)
    q, k, v = make_qkv(1, 2, 1, 130, 70, 64, device=DEV)
    f = 64 ** -0.5 * LOG2E
    torch.library.opcheck(ops.quant_qk, (q, k, None, None, 130, 70, f, True))
    q8, qs, k8, ks, km = ops.quant_qk(q, k, None, None, 130, 70, f, True)
    args = (q8, qs, k8, ks, v, q, km, None, None, None, None, None, 130, 70, 0.125, True, False, True, True, False, "fp32")
    torch.library.opcheck(ops.attention, args)


# CPU, under TRITON_INTERPRET=1: one small case per feature (the interpreter runs ~1 tile per ms).
INTERPRET_CASES = [
    dict(b=1, hq=2, hkv=1, lq=17, lk=130, d=64, causal=None, lse=True, layout="NHD"),
    dict(b=2, hq=2, hkv=2, lq=130, lk=130, d=64, causal="top_left", lse=True, layout="HND"),
    dict(b=1, hq=3, hkv=1, lq=70, lk=200, d=128, causal="bottom_right", lse=False, layout="NHD"),
    dict(b=1, hq=1, hkv=1, lq=1, lk=1, d=64, causal=None, lse=True, layout="HND"),
]


@interpret_only
@pytest.mark.parametrize("case", INTERPRET_CASES, ids=lambda c: f"q{c['lq']}k{c['lk']}d{c['d']}-{c['causal']}")
def test_interpret_matches_reference(case, seed):
    layout = case["layout"]
    q, k, v = make_qkv(case["b"], case["hq"], case["hkv"], case["lq"], case["lk"], case["d"], k_bias=6.0, layout=layout)
    if layout == "NHD":
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    _check_against_reference(q, k, v, _cfg(case["d"], case["causal"], case["lse"]))


@interpret_only
@pytest.mark.parametrize("kind", ("bool", "float"))
def test_interpret_mask(kind, seed):
    q, k, v = make_qkv(1, 2, 1, 40, 90, 64)
    keep = torch.rand(40, 90) > 0.4
    keep[3] = False
    mask = keep if kind == "bool" else torch.where(keep, torch.randn(40, 90), float("-inf"))
    o, lse = _check_against_reference(q, k, v, _cfg(64, None, True, mask=mask))
    assert (o[:, :, 3] == 0).all() and torch.isinf(lse[:, :, 3]).all()


@interpret_only
def test_interpret_huge_logits_take_the_exact_path(seed):
    """fp16 inputs in the tens of thousands (logits ~1e9): every unmasked tile takes the integer-max path."""
    q, k, v = ((torch.rand(1, 2, 150, 64) * 2 - 1).mul(30000).half() for _ in range(3))
    for causal in (None, "top_left"):
        o, lse = _backend().forward(q, k, v, _cfg(64, causal, lse=True))
        assert torch.isfinite(o).all() and torch.isfinite(lse).all()
        assert o.abs().max() <= v.abs().max() * 1.001


@interpret_only
def test_interpret_varlen(seed):
    lens_q, lens_k = [3, 0, 70], [5, 4, 130]
    cu_q = torch.tensor([0] + lens_q).cumsum(0).int()
    cu_k = torch.tensor([0] + lens_k).cumsum(0).int()
    q = torch.randn(sum(lens_q), 2, 64).half()
    k = (torch.randn(sum(lens_k), 1, 64) + 5).half()
    v = torch.randn(sum(lens_k), 1, 64).half()
    cfg = _cfg(64, "bottom_right", lse=True)
    o, lse = _backend().forward_varlen(q, k, v, cu_q, cu_k, 70, 130, cfg)
    ro, rlse = reference.varlen_attention(q, k, v, cu_q, cu_k, cfg)
    assert rel_l1(o, ro) <= TIGHT_REL_L1[torch.float16]
    _assert_lse_close(lse, rlse)


def test_available_explains_why_not():
    reason = _backend().available(torch.device("cpu"))
    assert isinstance(reason, str) and "CUDA" in reason


def test_backend_rejects_unserved_settings():
    q = torch.zeros(1, 1, 4, 96, dtype=torch.float16)
    with pytest.raises(ValueError, match="head dims"):
        _backend().forward(q, q, q, _cfg(96))
    q = torch.zeros(1, 1, 4, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="fp32"):
        _backend().forward(q, q, q, _cfg(64, accum="fp16"))

"""The Hopper Gluon kernel (sageattention/triton/attention_sm90.py) against the portable Triton kernel, reference.py
and fp32 attention, on the calls ops.py routes to it (D=64, 16-bit P·V, no mask, fixed length, sm90).

Both kernels run on the same quantized codes; they differ in tile order (masked tiles first here) and in where the
rescale rounds, so they agree to fp32 rounding, far inside the distance to fp32 attention.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from sageattention import reference
from sageattention.config import AttentionConfig

from helpers import cosine, make_qkv, rel_l1

triton = pytest.importorskip("triton")
pytestmark = pytest.mark.gpu
DEV = "cuda"
BETWEEN_KERNELS = {torch.float16: 2e-3, torch.bfloat16: 8e-3}  # rel-L1, ~1 ulp of the output type
TO_REFERENCE = {torch.float16: 3e-3, torch.bfloat16: 1.2e-2}  # test_triton_attention.TIGHT_REL_L1


def _hopper():
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9


needs_hopper = pytest.mark.skipif(not _hopper(), reason="the Gluon kernel serves sm90 only")


def _run(q, k, v, cfg, use_sm90, monkeypatch):
    """(o, lse, whether attention_sm90 ran) with outputs poisoned first, so unwritten elements show as NaN."""
    from sageattention.triton import backend, ops

    ran = []
    serves = ops._sm90_kernel_serves
    monkeypatch.setattr(ops, "USE_SM90_KERNEL", use_sm90)
    monkeypatch.setattr(ops, "_sm90_kernel_serves", lambda *a: ran.append(serves(*a)) or ran[-1])
    torch.full((q.numel() * 2,), float("nan"), dtype=q.dtype, device=q.device)
    o, lse = backend.forward(q, k, v, cfg)
    return o, lse, bool(ran) and ran[-1]


CASES = [
    dict(lq=lq, lk=lk, causal=causal, heads=heads, dtype=dtype, layout=layout)
    for (lq, lk), causal, heads, dtype, layout in itertools.product(
        ((1, 1), (17, 17), (64, 64), (100, 1000), (1000, 1000), (1000, 100), (4097, 4097), (128, 4096)),
        (None, "top_left", "bottom_right"), ((4, 4), (8, 2)), (torch.float16, torch.bfloat16), ("HND", "NHD"),
    )
    if not (causal == "bottom_right" and lq > lk and lq != 1000)  # one bottom-right case with rows that see no key
][::3]  # every third of the grid: ~60 cases covering each value of each axis


@needs_hopper
@pytest.mark.parametrize("case", CASES, ids=lambda c: (f"q{c['lq']}k{c['lk']}-{c['causal'] or 'full'}-h{c['heads'][0]}"
                                                      f"-{c['heads'][1]}-{str(c['dtype'])[6:8]}-{c['layout']}"))
def test_sm90_kernel_matches_portable_kernel_and_reference(case, seed, monkeypatch):
    hq, hkv = case["heads"]
    q, k, v = make_qkv(2, hq, hkv, case["lq"], case["lk"], 64, device=DEV, dtype=case["dtype"], k_bias=6.0,
                       layout=case["layout"])
    if case["layout"] == "NHD":
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    cfg = AttentionConfig(sm_scale=64 ** -0.5, is_causal=case["causal"] is not None,
                          causal_alignment=case["causal"] or "top_left", return_lse=True, head_dim=64)
    o, lse, ran = _run(q, k, v, cfg, True, monkeypatch)
    assert ran, "ops.py did not route this call to attention_sm90"
    o_tl, lse_tl, ran_tl = _run(q, k, v, cfg, False, monkeypatch)
    assert not ran_tl
    assert not torch.isnan(o).any() and not torch.isnan(lse).any(), "unwritten or NaN outputs"
    assert o.stride() == q.stride()
    assert torch.equal(torch.isinf(lse), torch.isinf(lse_tl))
    fin = torch.isfinite(lse_tl)
    if fin.any():
        assert float((lse[fin] - lse_tl[fin]).abs().max()) < 1e-3
    if o_tl.abs().sum() > 0:
        assert rel_l1(o, o_tl) <= BETWEEN_KERNELS[q.dtype], rel_l1(o, o_tl)
        ro, _ = reference.attention(q, k, v, cfg)
        assert rel_l1(o, ro) <= TO_REFERENCE[q.dtype]
        eo, _ = reference.exact_attention(q, k, v, is_causal=cfg.is_causal, causal_alignment=cfg.causal_alignment,
                                          sm_scale=cfg.sm_scale)
        seen = torch.isfinite(lse_tl)  # rows with at least one key (bottom-right causal with lq > lk has others)
        assert cosine(o[seen], eo[seen]) >= 0.9995 and rel_l1(o[seen], eo[seen]) <= 0.03
    else:
        assert torch.equal(o, o_tl)  # every row saw no key: zeros


@needs_hopper
@pytest.mark.parametrize("causal", (False, True))
def test_sm90_kernel_exact_path_for_large_inputs(causal, seed, monkeypatch):
    """fp16 inputs near 60000 push logits past 2^16: the exact integer path, no overflow, no NaN."""
    q, k, v = ((torch.rand(1, 4, 1000, 64, device=DEV) * 2 - 1) * 60000 for _ in range(3))
    q, k, v = q.half(), k.half(), v.half()
    cfg = AttentionConfig(sm_scale=0.125, is_causal=causal, return_lse=True, head_dim=64)
    o, lse, ran = _run(q, k, v, cfg, True, monkeypatch)
    assert ran
    assert torch.isfinite(o).all() and torch.isfinite(lse).all()
    assert o.abs().max() <= v.abs().max() * 1.001  # a convex combination of V rows
    o_tl, lse_tl, _ = _run(q, k, v, cfg, False, monkeypatch)
    assert rel_l1(o, o_tl) <= 1e-2 and float((lse - lse_tl).abs().max()) <= 1e-3 * float(lse_tl.abs().max())


@needs_hopper
def test_sm90_kernel_declines_what_it_does_not_serve(monkeypatch):
    """Masks, FP8 P·V, other head dims and varlen stay on attention.py."""
    from sageattention import sageattn

    q, k, v = make_qkv(1, 2, 2, 256, 256, 64, device=DEV)
    for kwargs in (dict(attn_mask=torch.ones(256, 256, dtype=torch.bool, device=DEV)), dict(pv="fp8")):
        cfg = AttentionConfig(sm_scale=0.125, head_dim=64, **kwargs)
        assert not _run(q, k, v, cfg, True, monkeypatch)[2], kwargs
    q, k, v = make_qkv(1, 2, 2, 256, 256, 128, device=DEV)
    assert not _run(q, k, v, AttentionConfig(sm_scale=128 ** -0.5, head_dim=128), True, monkeypatch)[2]
    assert sageattn(q, k, v, backend="triton").shape == q.shape

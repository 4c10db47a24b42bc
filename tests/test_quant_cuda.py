"""The CUDA quantization kernels against sageattention/quant/spec.py given the kernel's own mean.

The kernels compute 127 / amax and amax / 127 the way torch's CUDA kernels do (reciprocal, then multiply), so on
the GPU they match spec.py bit for bit; the checks still allow a code to land one step away when x / scale sits
within an ulp of a rounding boundary (spec.py: "kernels may break ties either way"), in at most 1e-4 of them."""

from __future__ import annotations

import pytest
import torch

from sageattention.quant import spec

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def quant():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from sageattention.ops import quant as module
    from sageattention.ops._backend import unavailable

    reason = unavailable(torch.device("cuda"), "_C_quant", (8, 0), "the quantization kernels")
    if reason is not None:
        pytest.skip(reason)
    return module


def _x(b, h, length, d, dtype, layout, bias=0.0):
    shape = (b, length, h, d) if layout == "NHD" else (b, h, length, d)
    x = torch.randn(shape, device="cuda") * 3 + bias * torch.randn(d, device="cuda")
    x = x.to(dtype)
    return x.transpose(1, 2) if layout == "NHD" else x


def assert_codes_match(codes, ref, max_fraction=1e-4):
    """Equal, except a rare code one step away (a rounding tie broken the other way)."""
    a, b = codes.float(), ref.float()
    if a.numel() == 0:
        return
    diff = (a - b).abs()
    if codes.dtype == torch.float8_e4m3fn:  # one e4m3 step is at most 1/8 relative (1/4 near subnormals)
        bad = diff > 0.25 * torch.maximum(a.abs(), b.abs()) + 2.0**-9
    else:
        bad = diff > 1
    assert not bad.any(), f"{int(bad.sum())} codes differ by more than one step"
    frac = float((diff > 0).float().mean())
    assert frac <= max_fraction, f"{frac:.2e} of the codes differ"


def assert_scales_match(scales, ref):
    torch.testing.assert_close(scales, ref, rtol=2.4e-7, atol=0)


CASES = [(b, h, length, d, dt, lay) for (b, h, length) in [(1, 1, 1), (2, 3, 17), (1, 2, 1000), (2, 1, 4097)]
         for d in (64, 128) for dt in (torch.float16, torch.bfloat16) for lay in ("HND", "NHD")]


@pytest.mark.parametrize("b,h,length,d,dtype,layout", CASES)
def test_seq_mean(quant, b, h, length, d, dtype, layout):
    x = _x(b, h, length, d, dtype, layout, bias=5.0)
    torch.testing.assert_close(quant.seq_mean(x), x.float().mean(dim=2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("b,h,length,d,dtype,layout", CASES)
@pytest.mark.parametrize("gran,warp_rows", [("per_warp", 16), ("per_warp", 32), ("per_thread", 16), ("per_thread", 32)])
def test_int8_q_and_smoothed_k(quant, b, h, length, d, dtype, layout, gran, warp_rows):
    x = _x(b, h, length, d, dtype, layout, bias=10.0)
    qg, kg = spec.q_grouping(gran, warp_rows), spec.k_grouping(gran)
    codes, scales = quant.quant_int8(x, None, qg.rows, qg.residues)
    ref_codes, ref_scales = spec.quantize_int8(x, qg)
    assert_codes_match(codes, ref_codes)
    assert_scales_match(scales, ref_scales)
    mean = quant.seq_mean(x)
    codes, scales = quant.quant_int8(x, mean, kg.rows, kg.residues)
    ref_codes, ref_scales = spec.quantize_int8(x.float() - mean[:, :, None], kg)
    assert_codes_match(codes, ref_codes)
    assert_scales_match(scales, ref_scales)
    assert codes.is_contiguous()


@pytest.mark.parametrize("b,h,length,d,dtype,layout", CASES)
@pytest.mark.parametrize("smooth_v", [False, True])
def test_fp8_v_transposed_per_channel(quant, b, h, length, d, dtype, layout, smooth_v):
    v = _x(b, h, length, d, dtype, layout, bias=2.0)
    vt, scale, mean = quant.quant_v_fp8(v, smooth_v)
    assert vt.shape == (b, h, d, -(-length // 64) * 64)
    pad = quant.untranspose_v(vt, vt.shape[-1])[:, :, length:].view(torch.uint8)  # keys, not permuted slots
    assert (pad == 0).all(), "keys past the end must be zero codes"
    if smooth_v:  # quantize with the kernel's mean so summation order cannot flip a code
        ref_mean = mean[:, :, None]
        vf = v.float() - ref_mean
        amax = vf.abs().amax(dim=2)
        inv = torch.where(amax > 0, 448.0 / amax, torch.zeros_like(amax))
        ref_codes = (vf * inv[:, :, None]).clamp(-448, 448).to(torch.float8_e4m3fn)
        ref_scale = amax / 448.0
        torch.testing.assert_close(mean, v.float().mean(dim=2), rtol=1e-5, atol=1e-5)
    else:
        ref_codes, ref_scale, ref_mean = spec.quantize_v_fp8(v, False)
        assert (mean == 0).all()
    codes = quant.untranspose_v(vt, length)
    assert_codes_match(codes, ref_codes)
    assert_scales_match(scale, ref_scale)


def test_bad_inputs_raise_one_line_errors(quant):
    x = torch.randn(1, 2, 10, 96, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="zero-pad the head dim"):
        quant.quant_int8(x, None, 32, 1)
    with pytest.raises(TypeError, match="float16 or torch.bfloat16"):
        quant.quant_int8(x[..., :64].float(), None, 32, 1)
    with pytest.raises(ValueError, match="group_rows"):
        quant.quant_int8(x[..., :64], None, 48, 1)


FUSED_CASES = [(b, hq, hk, lq, lk, d, dt, lay) for (b, hq, hk, lq, lk) in [(1, 1, 1, 1, 1), (2, 4, 2, 17, 1000),
                                                                          (1, 2, 2, 4097, 17), (2, 3, 1, 1000, 4097)]
               for d in (64, 128) for dt in (torch.float16, torch.bfloat16) for lay in ("HND", "NHD")]


@pytest.mark.parametrize("b,hq,hk,lq,lk,d,dtype,layout", FUSED_CASES)
@pytest.mark.parametrize("gran,warp_rows,smooth_k,with_v,smooth_v",
                         [("per_thread", 16, True, True, False), ("per_warp", 32, True, True, True),
                          ("per_thread", 32, False, False, False), ("per_warp", 16, False, True, True)])
def test_fused_quant_matches_the_step_ops(quant, b, hq, hk, lq, lk, d, dtype, layout, gran, warp_rows, smooth_k,
                                          with_v, smooth_v):
    """quant_qkv (three launches, statistics finished by each head's last block) gives the step ops' results bit for
    bit; the GQA shapes make Q's and K's grids differ."""
    q = _x(b, hq, lq, d, dtype, layout, bias=3.0)
    k = _x(b, hk, lk, d, dtype, layout, bias=10.0)
    v = _x(b, hk, lk, d, dtype, layout, bias=2.0) if with_v else None
    qg, kg = spec.q_grouping(gran, warp_rows), spec.k_grouping(gran)
    q8, qs, k8, ks, km, vt, vs, vm = quant.quant_qkv(q, k, v, qg.rows, qg.residues, kg.residues, smooth_k, smooth_v)
    ref_q8, ref_qs = quant.quant_int8(q, None, qg.rows, qg.residues)
    ref_km = quant.seq_mean(k) if smooth_k else None
    ref_k8, ref_ks = quant.quant_int8(k, ref_km, kg.rows, kg.residues)
    assert torch.equal(q8, ref_q8) and torch.equal(qs, ref_qs)
    assert torch.equal(k8, ref_k8) and torch.equal(ks, ref_ks)
    if smooth_k:
        assert torch.equal(km, ref_km)
    else:
        assert km.numel() == 0
    if with_v:
        ref_vt, ref_vs, ref_vm = quant.quant_v_fp8(v, smooth_v)
        assert torch.equal(vt.view(torch.uint8), ref_vt.view(torch.uint8))
        assert torch.equal(vs, ref_vs) and torch.equal(vm, ref_vm)
    else:
        assert vt.numel() == vs.numel() == vm.numel() == 0
    # and against spec.py (the step ops' own tests pin them; this keeps the fused op honest if they move)
    assert_codes_match(q8, spec.quantize_int8(q, qg)[0])
    k_ref_in = k.float() - km[:, :, None] if smooth_k else k
    assert_codes_match(k8, spec.quantize_int8(k_ref_in, kg)[0])


def test_fused_quant_repeated_calls_agree(quant):
    """Which block of a head finishes its statistics varies from call to call; the result must not (the finish
    sums the splits in split order)."""
    k = _x(2, 3, 3000, 128, torch.float16, "HND", bias=4.0)
    v = _x(2, 3, 3000, 128, torch.float16, "HND", bias=1.0)
    first = quant.quant_qkv(k, k, v, 32, 8, 4, True, True)
    for _ in range(3):
        again = quant.quant_qkv(k, k, v, 32, 8, 4, True, True)
        for a, b_ in zip(first, again):
            assert torch.equal(a.view(torch.uint8) if a.dtype == torch.float8_e4m3fn else a,
                               b_.view(torch.uint8) if b_.dtype == torch.float8_e4m3fn else b_)

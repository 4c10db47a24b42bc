"""patch_sdpa: which SDPA calls go to sageattn, that every other call is SDPA's own, counters, install/restore."""

import logging
import threading

import pytest
import torch
import torch.nn.functional as F

import sageattention
from sageattention import patch, sageattn
from helpers import cosine, make_qkv

ORIGINAL = F.scaled_dot_product_attention


@pytest.fixture(autouse=True)
def clean_patch_state():
    """Each test starts unpatched with zero counters and leaves the original SDPA behind."""
    sageattention.unpatch_sdpa()
    patch.reset_stats()
    yield
    sageattention.unpatch_sdpa()
    patch.reset_stats()
    assert F.scaled_dot_product_attention is ORIGINAL


@pytest.fixture
def route_cpu(monkeypatch):
    """Route CPU calls too: sageattn then runs the PyTorch reference, so routing is testable without a GPU."""
    monkeypatch.setattr(patch, "ROUTED_DEVICE_TYPES", ("cuda", "cpu"))


def qkv(dtype=torch.float16, b=2, hq=4, hkv=4, lq=24, lk=24, d=32, device="cpu"):
    return make_qkv(b, hq, hkv, lq, lk, d, dtype=dtype, device=device)


# (reason, how to build the call); every call must reach the original SDPA.
def _mask_call():
    q, k, v = qkv()
    return (q, k, v), {"attn_mask": torch.rand(24, 24) > 0.3}


def _dropout_call():
    return qkv(), {"dropout_p": 0.25}


def _fp32_call():
    return qkv(torch.float32), {"is_causal": True}


def _cpu_call():
    return qkv(torch.bfloat16), {"is_causal": True, "scale": 0.3}


def _mixed_dtype_call():
    q, k, v = qkv()
    return (q, k.bfloat16(), v.bfloat16()), {}


FALLBACKS_DEFAULT_DEVICES = [
    ("attn_mask", _mask_call),
    ("dropout", _dropout_call),
    ("dtype", _fp32_call),
    ("dtype", _mixed_dtype_call),
    ("device", _cpu_call),
]


def _outcome(fn, args, kwargs):
    """A tensor, or (exception type, message): a fallback must reproduce SDPA's errors too."""
    torch.manual_seed(1234)  # one RNG state, so dropout draws the same mask
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:
        return type(exc), str(exc)


def _assert_same_as_sdpa(args, kwargs):
    with sageattention.patch_sdpa():
        got = _outcome(F.scaled_dot_product_attention, args, kwargs)
    want = _outcome(ORIGINAL, args, kwargs)
    if isinstance(want, tuple):
        assert got == want
    else:
        assert torch.equal(got, want)


@pytest.mark.parametrize("reason,build", FALLBACKS_DEFAULT_DEVICES, ids=lambda x: x if isinstance(x, str) else "")
def test_fallback_equals_sdpa_and_is_counted(reason, build):
    _assert_same_as_sdpa(*build())
    assert patch.stats() == {reason: 1}


def _head_dim_call():
    return qkv(d=264), {}


def _gqa_without_flag_call():
    q, k, v = qkv(hq=4, hkv=2)
    return (q, k, v), {}


def _scale_call():
    return qkv(), {"scale": -0.5}


def _three_d_call():
    q, k, v = qkv()
    return (q[0], k[0], v[0]), {}


def _dv_call():
    q, k, v = qkv()
    return (q, k, torch.randn(2, 4, 24, 16, dtype=torch.float16)), {}


FALLBACKS_ROUTABLE_DEVICE = [
    ("head_dim", _head_dim_call),
    ("heads", _gqa_without_flag_call),
    ("scale", _scale_call),
    ("shape", _three_d_call),
    ("shape", _dv_call),
]


@pytest.mark.parametrize("reason,build", FALLBACKS_ROUTABLE_DEVICE, ids=lambda x: x if isinstance(x, str) else "")
def test_fallback_on_a_routed_device(route_cpu, reason, build):
    _assert_same_as_sdpa(*build())
    assert patch.stats() == {reason: 1}


def test_empty_sequence_falls_back(route_cpu):
    q, _, _ = qkv(lq=0)
    _, k, v = qkv()
    _assert_same_as_sdpa((q, k, v), {})
    assert patch.stats() == {"empty": 1}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "hq,hkv,lq,lk,causal,scale",
    [(4, 4, 24, 24, False, None), (4, 4, 17, 40, True, None), (4, 2, 40, 17, True, 0.2), (8, 2, 33, 33, False, 0.5)],
)
def test_routed_call_is_sageattn(route_cpu, dtype, hq, hkv, lq, lk, causal, scale):
    """A routed call returns exactly sageattn's output with SDPA's scale, causal (top-left) and GQA meaning."""
    q, k, v = qkv(dtype, hq=hq, hkv=hkv, lq=lq, lk=lk)
    with sageattention.patch_sdpa():
        got = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=hq != hkv)
    assert patch.stats() == {"routed": 1}
    assert torch.equal(got, sageattn(q, k, v, is_causal=causal, sm_scale=scale))
    exact = ORIGINAL(q.double(), k.double(), v.double(), is_causal=causal, scale=scale, enable_gqa=hq != hkv)
    assert cosine(got, exact) >= 0.999  # the meaning matches SDPA's, not only sageattn's


def test_min_query_len_keeps_short_calls_with_sdpa(route_cpu, monkeypatch):
    monkeypatch.setattr(patch, "MIN_QUERY_LEN", 16)
    q, k, v = qkv(lq=15)
    _assert_same_as_sdpa((q, k, v), {})
    with sageattention.patch_sdpa():
        F.scaled_dot_product_attention(q[:, :, :1].expand(-1, -1, 16, -1), k, v)
    assert patch.stats() == {"short_query": 1, "routed": 1}


def test_positional_arguments_follow_sdpa(route_cpu):
    q, k, v = qkv()
    with sageattention.patch_sdpa():
        got = F.scaled_dot_product_attention(q, k, v, None, 0.0, True)
        with pytest.raises(TypeError):
            F.scaled_dot_product_attention(q, k, v, None, 0.0, True, 0.5)  # scale is keyword-only in SDPA too
    assert torch.equal(got, sageattn(q, k, v, is_causal=True))


def test_unknown_keyword_goes_to_sdpa(route_cpu):
    q, k, v = qkv()
    with sageattention.patch_sdpa(), pytest.raises(TypeError):
        F.scaled_dot_product_attention(q, k, v, not_an_sdpa_argument=1)
    assert patch.stats() == {"argument": 1}


def test_grad_inputs_are_routed_with_exact_gradient(route_cpu):
    q, k, v = (x.requires_grad_() for x in qkv(torch.float32, lq=16, lk=16))
    qh, kh, vh = (x.detach().half().requires_grad_() for x in (q, k, v))
    with sageattention.patch_sdpa():
        out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
    assert patch.stats() == {"routed": 1}
    weight = torch.randn_like(out)
    (out.float() * weight).sum().backward()
    ref = ORIGINAL(q, k, v, is_causal=True)
    (ref * weight).sum().backward()
    for ours, exact in ((qh, q), (kh, k), (vh, v)):
        assert cosine(ours.grad, exact.grad) >= 0.999


def test_counters_and_one_log_line_per_reason(route_cpu, caplog):
    q, k, v = qkv()
    caplog.set_level(logging.INFO, logger="sageattention.patch")
    with sageattention.patch_sdpa():
        for _ in range(3):
            F.scaled_dot_product_attention(q, k, v)
        for _ in range(2):
            F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
    assert patch.stats() == {"routed": 3, "dtype": 2, "dropout": 1}
    lines = [r.getMessage() for r in caplog.records if r.name == "sageattention.patch"]
    assert len(lines) == 3
    assert any(patch.FALLBACK_REASONS["dtype"] in line for line in lines)
    patch.reset_stats()
    assert patch.stats() == {}


def test_context_manager_restores_the_exact_original():
    with sageattention.patch_sdpa():
        assert F.scaled_dot_product_attention is patch.scaled_dot_product_attention
        with sageattention.patch_sdpa():  # nested
            assert patch.is_patched()
        assert patch.is_patched()
    assert F.scaled_dot_product_attention is ORIGINAL
    with pytest.raises(ValueError):
        with sageattention.patch_sdpa():
            raise ValueError("inside")
    assert F.scaled_dot_product_attention is ORIGINAL


def test_global_switch_is_idempotent_and_composes_with_the_context_manager():
    sageattention.patch_sdpa(enable=True)
    sageattention.patch_sdpa(enable=True)
    assert patch.is_patched()
    with sageattention.patch_sdpa():
        sageattention.unpatch_sdpa()
        assert patch.is_patched()  # the open block still holds it
    assert F.scaled_dot_product_attention is ORIGINAL
    sageattention.unpatch_sdpa()
    assert F.scaled_dot_product_attention is ORIGINAL
    with pytest.raises(TypeError, match="enable must be"):
        sageattention.patch_sdpa(enable="yes")


def test_a_function_bound_before_patching_is_not_routed(route_cpu):
    from torch.nn.functional import scaled_dot_product_attention as bound_early

    q, k, v = qkv()
    with sageattention.patch_sdpa():
        bound_early(q, k, v)
    assert patch.stats() == {}


def test_patch_is_process_wide(route_cpu):
    q, k, v = qkv()
    with sageattention.patch_sdpa():
        worker = threading.Thread(target=lambda: F.scaled_dot_product_attention(q, k, v))
        worker.start()
        worker.join()
    assert patch.stats() == {"routed": 1}


# ---- GPU: the real kernels behind the patch -------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "hq,hkv,lq,lk,d,causal,scale",
    [(8, 8, 512, 512, 64, False, None), (8, 8, 300, 700, 128, True, None), (16, 4, 1024, 1024, 128, True, 0.1),
     (4, 4, 256, 256, 256, False, None), (8, 2, 1, 513, 128, False, None)],
)
def test_gpu_routed_matches_sdpa(dtype, hq, hkv, lq, lk, d, causal, scale):
    q, k, v = qkv(dtype, b=2, hq=hq, hkv=hkv, lq=lq, lk=lk, d=d, device="cuda")
    gqa = hq != hkv
    with sageattention.patch_sdpa():
        got = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=gqa)
    assert patch.stats() == {"routed": 1}
    want = ORIGINAL(q.float(), k.float(), v.float(), is_causal=causal, scale=scale, enable_gqa=gqa)
    assert got.dtype == dtype and got.shape == want.shape
    assert cosine(got, want) >= 0.999


@pytest.mark.gpu
def test_gpu_fallbacks_equal_sdpa():
    q, k, v = qkv(torch.float16, b=2, hq=8, hkv=8, lq=128, lk=128, d=64, device="cuda")
    mask = torch.rand(128, 128, device="cuda") > 0.2
    calls = [
        ((q, k, v), {"attn_mask": mask}),
        ((q.float(), k.float(), v.float()), {"is_causal": True}),
        ((q, k, v), {"scale": -1.0}),
    ]
    for args, kwargs in calls:
        with sageattention.patch_sdpa():
            got = F.scaled_dot_product_attention(*args, **kwargs)
        # bitwise equal, NaN included (SDPA itself returns NaN for some of these inputs, e.g. scale=-1 on GPU)
        torch.testing.assert_close(got, ORIGINAL(*args, **kwargs), rtol=0, atol=0, equal_nan=True)
    q320 = torch.randn(1, 2, 64, 320, device="cuda", dtype=torch.float16)
    with sageattention.patch_sdpa():
        got = F.scaled_dot_product_attention(q320, q320, q320)
    assert torch.equal(got, ORIGINAL(q320, q320, q320))
    assert patch.stats() == {"attn_mask": 1, "dtype": 1, "scale": 1, "head_dim": 1}

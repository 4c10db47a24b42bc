"""sageattn with inputs that require grad: the forward is the quantized kernel's, the gradient exact attention's."""

import math

import pytest
import torch
import torch.nn.functional as F

from sageattention import sageattn, sageattn_qk_int8_pv_fp16_triton
from helpers import cosine, make_qkv


def attention64(q, k, v, *, scale=None, offset=None, mask=None):
    """(o, lse) in float64 by the textbook formula, HND, GQA by repetition; offset: query i sees keys j <= i + offset."""
    q, k, v = (x.double() for x in (q, k, v))
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    s = q @ k.transpose(-1, -2) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if offset is not None:
        lq, lk = s.shape[-2:]
        s = s.masked_fill(torch.ones(lq, lk, dtype=torch.bool).tril(offset).logical_not(), -math.inf)
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else s + mask.double()
    lse = s.logsumexp(-1)
    return (s - lse[..., None]).exp() @ v, lse


def leaf_inputs(*tensors):
    return [x.detach().clone().requires_grad_() for x in tensors]


def grads_of(fn, inputs, weights):
    """Gradients of sum(w * output) for each output/weight pair (the weights stand for an upstream loss)."""
    outputs = fn(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    loss = sum((o.double() * w).sum() for o, w in zip(outputs, weights))
    return torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)


def check_grads(ours, exact, lowp=None, min_cos=0.9995):
    """Each of our gradients points like float64 exact attention's, and is no further from it than PyTorch's
    own low-precision SDPA gradient (plus the rounding of one dtype step), where that is given."""
    for i, (g, e) in enumerate(zip(ours, exact)):
        assert g.dtype in (torch.float16, torch.bfloat16) and g.shape == e.shape, i
        assert cosine(g, e) >= min_cos, (i, cosine(g, e))
        if lowp is not None:
            eps = torch.finfo(g.dtype).eps
            ours_err = (g.double() - e).abs().max().item()
            sdpa_err = (lowp[i].double() - e).abs().max().item()
            assert ours_err <= 2 * sdpa_err + 4 * eps * e.abs().max().item(), (i, ours_err, sdpa_err)


CASES = [  # b, hq, hkv, lq, lk, d, causal, scale
    (1, 2, 2, 16, 16, 16, False, None),
    (2, 2, 2, 13, 29, 32, True, None),
    (1, 4, 2, 29, 13, 16, True, 0.3),
    (1, 6, 2, 20, 20, 64, False, 0.1),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("b,hq,hkv,lq,lk,d,causal,scale", CASES)
def test_gradient_is_exact_attention(dtype, b, hq, hkv, lq, lk, d, causal, scale):
    q, k, v = make_qkv(b, hq, hkv, lq, lk, d, dtype=dtype)
    w = torch.randn(b, hq, lq, d, dtype=torch.float64)
    ours = grads_of(lambda *x: sageattn(*x, is_causal=causal, sm_scale=scale), leaf_inputs(q, k, v), [w])
    exact = grads_of(lambda *x: attention64(*x, scale=scale, offset=0 if causal else None)[0], leaf_inputs(q, k, v), [w])
    sdpa = grads_of(
        lambda *x: F.scaled_dot_product_attention(*x, is_causal=causal, scale=scale, enable_gqa=hq != hkv),
        leaf_inputs(q, k, v), [w],
    )
    check_grads(ours, exact, sdpa)


@pytest.mark.parametrize("layout", ["HND", "NHD"])
def test_bottom_right_causal_gradient(layout):
    q, k, v = make_qkv(1, 4, 2, 11, 30, 32, dtype=torch.float16)
    w = torch.randn(1, 4, 11, 32, dtype=torch.float64)
    as_layout = (lambda x: x.transpose(1, 2)) if layout == "NHD" else (lambda x: x)

    def run(*x):
        o = sageattn(*(as_layout(t) for t in x), tensor_layout=layout, is_causal=True, causal_alignment="bottom_right")
        return as_layout(o)

    ours = grads_of(run, leaf_inputs(q, k, v), [w])
    exact = grads_of(lambda *x: attention64(*x, offset=30 - 11)[0], leaf_inputs(q, k, v), [w])
    check_grads(ours, exact)


@pytest.mark.parametrize("kind", ["bool", "additive"])
@pytest.mark.parametrize("causal", [False, True])
def test_masked_gradient(kind, causal):
    q, k, v = make_qkv(2, 2, 2, 24, 24, 32, dtype=torch.bfloat16)
    keep = torch.rand(2, 1, 24, 24) > 0.3
    keep[..., 0] = True  # every row sees at least one key
    mask = keep if kind == "bool" else torch.where(keep, torch.randn(2, 1, 24, 24), -math.inf)
    w = torch.randn(2, 2, 24, 32, dtype=torch.float64)
    ours = grads_of(
        lambda *x: sageattn_qk_int8_pv_fp16_triton(*x, attn_mask=mask, is_causal=causal), leaf_inputs(q, k, v), [w]
    )
    exact = grads_of(lambda *x: attention64(*x, mask=mask, offset=0 if causal else None)[0], leaf_inputs(q, k, v), [w])
    check_grads(ours, exact)


def test_gradient_through_lse():
    q, k, v = make_qkv(1, 4, 2, 20, 28, 32, dtype=torch.float16)
    w_o, w_lse = torch.randn(1, 4, 20, 32, dtype=torch.float64), torch.randn(1, 4, 20, dtype=torch.float64)
    ours = grads_of(lambda *x: sageattn(*x, is_causal=True, return_lse=True), leaf_inputs(q, k, v), [w_o, w_lse])
    exact = grads_of(lambda *x: attention64(*x, offset=0), leaf_inputs(q, k, v), [w_o, w_lse])
    check_grads(ours, exact)
    only_lse = grads_of(lambda *x: sageattn(*x, return_lse=True)[1], leaf_inputs(q, k, v), [w_lse])
    exact_lse = grads_of(lambda *x: attention64(*x)[1], leaf_inputs(q, k, v), [w_lse])
    check_grads(only_lse[:2], exact_lse[:2])
    assert torch.count_nonzero(only_lse[2]) == 0  # V does not move the LSE


def test_forward_output_is_the_quantized_kernels():
    q, k, v = make_qkv(1, 2, 2, 40, 40, 64, dtype=torch.float16)
    with_grad = sageattn(*leaf_inputs(q, k, v), is_causal=True)
    assert with_grad.grad_fn is not None
    assert torch.equal(with_grad.detach(), sageattn(q, k, v, is_causal=True))
    exact = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert not torch.equal(with_grad.detach(), exact)  # quantized, not silently replaced by SDPA


def test_only_inputs_that_require_grad_get_one():
    q, k, v = make_qkv(1, 2, 2, 16, 16, 16, dtype=torch.float16)
    v = v.requires_grad_()
    out = sageattn(q, k, v)
    out.float().sum().backward()
    assert v.grad is not None and q.grad is None and k.grad is None
    with torch.no_grad():
        assert sageattn(q, k, v).grad_fn is None
    assert sageattn(q, k, v.detach()).grad_fn is None


# ---- GPU: the real kernels forward, SDPA's fused kernels backward -----------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "b,hq,hkv,lq,lk,d,causal,alignment",
    [(2, 8, 8, 256, 256, 64, False, "top_left"), (1, 8, 2, 300, 500, 128, True, "top_left"),
     (1, 4, 4, 200, 520, 128, True, "bottom_right"), (1, 2, 2, 128, 128, 256, True, "top_left")],
)
def test_gpu_gradient_matches_sdpa(dtype, b, hq, hkv, lq, lk, d, causal, alignment):
    q, k, v = make_qkv(b, hq, hkv, lq, lk, d, dtype=dtype, device="cuda")
    w = torch.randn(b, hq, lq, d, dtype=torch.float64, device="cuda")
    ours = grads_of(
        lambda *x: sageattn(*x, is_causal=causal, causal_alignment=alignment), leaf_inputs(q, k, v), [w]
    )
    offset = (lk - lq if alignment == "bottom_right" else 0) if causal else None
    keep = None if offset is None else torch.ones(lq, lk, dtype=torch.bool, device="cuda").tril(offset)
    fp32 = grads_of(
        lambda *x: F.scaled_dot_product_attention(*x, attn_mask=keep, enable_gqa=hq != hkv),
        leaf_inputs(q.float(), k.float(), v.float()), [w],
    )
    for g, e in zip(ours, fp32):
        assert g.dtype == dtype
        assert cosine(g, e) >= 0.999

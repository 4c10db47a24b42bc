"""torch.compile: models calling sageattn (directly or through patch_sdpa) trace with fullgraph=True, train, and run
under CUDA graphs (mode="reduce-overhead"). CPU tests use the aot_eager backend over the PyTorch reference."""

import pytest
import torch
import torch.nn.functional as F

import sageattention
from sageattention import patch, sageattn
from helpers import cosine


class TinyAttention(torch.nn.Module):
    """Projections around one attention call: the shape of a transformer block's attention."""

    def __init__(self, dim=256, heads=4, kv_heads=2, use_patched_sdpa=False):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.q = torch.nn.Linear(dim, dim)
        self.kv = torch.nn.Linear(dim, 2 * kv_heads * self.head_dim)
        self.out = torch.nn.Linear(dim, dim)
        self.use_patched_sdpa = use_patched_sdpa

    def forward(self, x):
        b, n, _ = x.shape
        q = self.q(x).view(b, n, self.heads, self.head_dim)
        k, v = self.kv(x).view(b, n, 2, self.kv_heads, self.head_dim).unbind(2)
        if self.use_patched_sdpa:
            o = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=True, enable_gqa=True)
            o = o.transpose(1, 2)
        else:
            o = sageattn(q, k, v, tensor_layout="NHD", is_causal=True)
        return self.out(o.reshape(b, n, -1))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    patch.reset_stats()
    yield
    sageattention.unpatch_sdpa()
    torch._dynamo.reset()


def model_and_input(device, dtype, n=64, dim=256, **kwargs):
    torch.manual_seed(0)
    model = TinyAttention(dim=dim, **kwargs).to(device=device, dtype=dtype)
    return model, torch.randn(2, n, dim, device=device, dtype=dtype)


def test_cpu_fullgraph_training_step(monkeypatch):
    monkeypatch.setattr(patch, "ROUTED_DEVICE_TYPES", ("cuda", "cpu"))
    model, x = model_and_input("cpu", torch.bfloat16, n=16, dim=64)
    eager_out = model(x)
    eager_grads = torch.autograd.grad(eager_out.float().square().sum(), list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    grads = torch.autograd.grad(out.float().square().sum(), list(model.parameters()))
    assert torch.equal(out, eager_out)
    for g, e in zip(grads, eager_grads):
        assert cosine(g, e) >= 0.9999


def test_cpu_fullgraph_patched_sdpa(monkeypatch):
    monkeypatch.setattr(patch, "ROUTED_DEVICE_TYPES", ("cuda", "cpu"))
    model, x = model_and_input("cpu", torch.float16, n=16, dim=64, use_patched_sdpa=True)
    with torch.no_grad(), sageattention.patch_sdpa():
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        out = compiled(x)
        assert patch.stats() == {}  # traced calls are not counted
        eager = model(x)
    assert patch.stats() == {"routed": 1}
    assert torch.equal(out, eager)


# ---- GPU ------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_fullgraph_inference(dtype):
    model, x = model_and_input("cuda", dtype, n=256)
    with torch.no_grad():
        eager = model(x)
        out = torch.compile(model, fullgraph=True)(x)
    assert out.dtype == dtype
    assert cosine(out, eager) >= 0.9999


@pytest.mark.gpu
def test_gpu_reduce_overhead_cuda_graphs():
    from torch._dynamo.utils import counters

    model, x = model_and_input("cuda", torch.float16, n=256)
    counters.clear()
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        eager = model(x)
        outs = [compiled(x).clone() for _ in range(3)]  # warm-up, record, replay
    assert counters["inductor"]["cudagraph_skips"] == 0  # inductor counts each graph it could not capture
    for out in outs:
        assert cosine(out, eager) >= 0.9999
    x2 = torch.randn_like(x)
    with torch.no_grad():
        assert cosine(compiled(x2), model(x2)) >= 0.9999  # replays read the new input


@pytest.mark.gpu
def test_gpu_fullgraph_training_step():
    model, x = model_and_input("cuda", torch.bfloat16, n=256)
    eager_out = model(x)
    eager_grads = torch.autograd.grad(eager_out.float().square().sum(), list(model.parameters()))
    out = torch.compile(model, fullgraph=True)(x)
    grads = torch.autograd.grad(out.float().square().sum(), list(model.parameters()))
    assert cosine(out, eager_out) >= 0.9999
    for g, e in zip(grads, eager_grads):
        assert cosine(g, e) >= 0.999


@pytest.mark.gpu
def test_gpu_fullgraph_patched_sdpa_matches_sdpa():
    model, x = model_and_input("cuda", torch.float16, n=256, use_patched_sdpa=True)
    with torch.no_grad():
        exact = model(x)  # unpatched: PyTorch's SDPA
        with sageattention.patch_sdpa():
            out = torch.compile(model, fullgraph=True)(x)
    assert cosine(out, exact) >= 0.999

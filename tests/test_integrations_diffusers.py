"""diffusers adapter and patch_sdpa under diffusers, on a tiny Flux transformer built from a config."""

import pytest
import torch

pytest.importorskip("diffusers", minversion="0.35")
from diffusers import FluxTransformer2DModel  # noqa: E402
from diffusers.models.attention_dispatch import (  # noqa: E402
    AttentionBackendName,
    _AttentionBackendRegistry,
    attention_backend,
)

import sageattention  # noqa: E402
from sageattention import patch  # noqa: E402
from sageattention.integrations import diffusers as sage_diffusers  # noqa: E402
from helpers import cosine  # noqa: E402

ATTENTION_CALLS = 2  # one double-stream block and one single-stream block


@pytest.fixture(autouse=True)
def clean_state():
    sage_diffusers.register()
    patch.reset_stats()
    yield
    sageattention.unpatch_sdpa()
    patch.reset_stats()


@pytest.fixture
def route_cpu(monkeypatch):
    monkeypatch.setattr(patch, "ROUTED_DEVICE_TYPES", ("cuda", "cpu"))


def tiny_flux(device="cpu", dtype=torch.float32, tokens=16, text_tokens=8):
    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
    ).to(device=device, dtype=dtype).eval()
    inputs = dict(
        hidden_states=torch.randn(2, tokens, 4), encoder_hidden_states=torch.randn(2, text_tokens, 32),
        pooled_projections=torch.randn(2, 32), timestep=torch.tensor([0.5, 0.5]),
        img_ids=torch.zeros(tokens, 3), txt_ids=torch.zeros(text_tokens, 3),
    )
    model_dtype = ("hidden_states", "encoder_hidden_states", "pooled_projections")  # timestep and ids stay fp32
    inputs = {k: v.to(device, dtype) if k in model_dtype else v.to(device) for k, v in inputs.items()}
    return model, inputs


def run(model, backend, inputs):
    model.set_attention_backend(backend)
    with torch.no_grad():
        return model(**inputs).sample


def test_register_serves_the_sage_name():
    sage_diffusers.register()
    assert _AttentionBackendRegistry._backends[AttentionBackendName.SAGE] is sage_diffusers.sage_backend


def test_fallback_is_native_exactly():
    model, inputs = tiny_flux()
    assert torch.equal(run(model, "sage", inputs), run(model, "native", inputs))
    assert patch.stats() == {"dtype": ATTENTION_CALLS}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_routed_matches_native(route_cpu, dtype):
    model, inputs = tiny_flux(dtype=dtype)
    got = run(model, "sage", inputs)
    assert patch.stats() == {"routed": ATTENTION_CALLS}
    assert cosine(got, run(model, "native", inputs)) >= 0.999


def test_patch_sdpa_routes_the_native_backend(route_cpu):
    model, inputs = tiny_flux(dtype=torch.bfloat16)
    via_backend = run(model, "sage", inputs)
    with sageattention.patch_sdpa():
        via_patch = run(model, "native", inputs)
    assert patch.stats() == {"routed": 2 * ATTENTION_CALLS}
    assert torch.equal(via_patch, via_backend)


def test_attention_backend_context_manager(route_cpu):
    model, inputs = tiny_flux(dtype=torch.bfloat16)  # no per-model backend: the active one applies
    with attention_backend("sage"), torch.no_grad():
        model(**inputs)
    assert patch.stats() == {"routed": ATTENTION_CALLS}


def test_masked_call_falls_back_to_native(route_cpu):
    q = torch.randn(2, 12, 2, 16, dtype=torch.bfloat16)  # diffusers' [B, L, H, D]
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[1, 8:] = False
    native = _AttentionBackendRegistry._backends[AttentionBackendName.NATIVE]
    got = sage_diffusers.sage_backend(q, q, q, attn_mask=keep)
    assert patch.stats() == {"attn_mask": 1}
    assert torch.equal(got, native(q, q, q, attn_mask=keep))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_flux_matches_native(dtype):
    model, inputs = tiny_flux("cuda", dtype, tokens=256, text_tokens=32)
    got = run(model, "sage", inputs)
    assert patch.stats() == {"routed": ATTENTION_CALLS}
    assert cosine(got, run(model, "native", inputs)) >= 0.999

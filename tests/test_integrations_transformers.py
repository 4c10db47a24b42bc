"""transformers adapter: attn_implementation="sage" on tiny models built from configs, compared with "sdpa"."""

import pytest
import torch

pytest.importorskip("transformers", minversion="4.53")
from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM  # noqa: E402

from sageattention import patch  # noqa: E402
from sageattention.integrations import transformers as sage_transformers  # noqa: E402
from helpers import cosine  # noqa: E402

LAYERS = 2


@pytest.fixture(autouse=True)
def registered():
    sage_transformers.register()
    patch.reset_stats()
    yield
    patch.reset_stats()


@pytest.fixture
def route_cpu(monkeypatch):
    monkeypatch.setattr(patch, "ROUTED_DEVICE_TYPES", ("cuda", "cpu"))


def tiny_llama(device="cpu", dtype=torch.float32, hidden=64, heads=4, kv_heads=2):
    config = LlamaConfig(
        vocab_size=128, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=LAYERS,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=512,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


def logits(model, implementation, ids, **kwargs):
    model.set_attn_implementation(implementation)
    return model(ids, **kwargs).logits


def test_registered_and_idempotent():
    sage_transformers.register()
    assert AttentionInterface._global_mapping["sage"] is sage_transformers.sage_attention_forward


@torch.no_grad()
def test_fallback_is_sdpa_exactly():
    model, ids = tiny_llama(), torch.randint(3, 128, (2, 19))
    assert torch.equal(logits(model, "sage", ids), logits(model, "sdpa", ids))
    assert patch.stats() == {"dtype": LAYERS}  # fp32 model


@torch.no_grad()
def test_padding_mask_falls_back(route_cpu):
    model, ids = tiny_llama(dtype=torch.bfloat16), torch.randint(3, 128, (2, 19))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    got = logits(model, "sage", ids, attention_mask=mask)
    assert patch.stats() == {"attn_mask": LAYERS}
    assert torch.equal(got, logits(model, "sdpa", ids, attention_mask=mask))


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_routed_matches_sdpa(route_cpu, dtype):
    model, ids = tiny_llama(dtype=dtype), torch.randint(3, 128, (2, 33))
    got = logits(model, "sage", ids)
    assert patch.stats() == {"routed": LAYERS}
    assert cosine(got, logits(model, "sdpa", ids)) >= 0.999


@torch.no_grad()
def test_generate_routes_prefill_and_decode(route_cpu):
    model, ids = tiny_llama(dtype=torch.bfloat16), torch.randint(3, 128, (1, 12))
    model.set_attn_implementation("sage")
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 15)
    assert patch.stats() == {"routed": 3 * LAYERS}  # one prefill, two decoding steps


def test_training_step_gradients(route_cpu):
    model, ids = tiny_llama(dtype=torch.bfloat16), torch.randint(3, 128, (2, 17))
    model.train()
    grads = {}
    for implementation in ("sage", "sdpa"):
        model.zero_grad()
        model.set_attn_implementation(implementation)
        model(ids, labels=ids).loss.backward()
        grads[implementation] = [p.grad.clone() for p in model.parameters()]
    assert patch.stats() == {"routed": LAYERS}
    for ours, exact in zip(grads["sage"], grads["sdpa"]):
        assert cosine(ours, exact) >= 0.99


def test_unserved_keyword_goes_to_sdpa(route_cpu):
    q = torch.randn(1, 2, 8, 16, dtype=torch.float16)
    module = torch.nn.Module()
    with pytest.raises(ValueError, match="softcap"):  # transformers' own sdpa function rejects softcap
        sage_transformers.sage_attention_forward(module, q, q, q, None, softcap=30.0)
    assert patch.stats() == {"argument": 1}


# ---- GPU ------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("hidden,heads,kv_heads", [(256, 4, 2), (512, 4, 4)])
def test_gpu_llama_matches_sdpa(dtype, hidden, heads, kv_heads):
    model = tiny_llama("cuda", dtype, hidden=hidden, heads=heads, kv_heads=kv_heads)
    ids = torch.randint(3, 128, (2, 200), device="cuda")
    got = logits(model, "sage", ids)
    assert patch.stats() == {"routed": LAYERS}
    assert cosine(got, logits(model, "sdpa", ids)) >= 0.999


@pytest.mark.gpu
@torch.no_grad()
def test_gpu_generate_and_padding():
    model = tiny_llama("cuda", torch.float16, hidden=256)
    ids = torch.randint(3, 128, (2, 64), device="cuda")
    model.set_attn_implementation("sage")
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    assert out.shape == (2, 68)
    assert patch.stats() == {"routed": 4 * LAYERS}
    mask = torch.ones_like(ids)
    mask[1, :10] = 0
    assert torch.equal(logits(model, "sage", ids, attention_mask=mask), logits(model, "sdpa", ids, attention_mask=mask))

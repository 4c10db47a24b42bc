"""sageattn's hand-off to SDPA where SDPA measured faster: the crossover table and the call itself (CPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sageattention import sdpa_fallback
from sageattention.config import AttentionConfig
from sageattention.dispatch import SDPA_CROSSOVER, sdpa_wins


def test_crossover_table_semantics(monkeypatch):
    monkeypatch.setitem(SDPA_CROSSOVER, (7, 5), {(64, False): 4096, (128, True): None})
    assert sdpa_wins((7, 5), 64, 1024, False) and not sdpa_wins((7, 5), 64, 4096, False)
    assert sdpa_wins((7, 5), 40, 100, False)  # head dims up to 64 share the 64 row
    assert sdpa_wins((7, 5), 128, 10**6, True)  # None: SDPA won at every measured length
    assert not sdpa_wins((7, 5), 128, 100, False)  # no row: the kernel runs
    assert not sdpa_wins((7, 5), 256, 100, True)
    assert not sdpa_wins((8, 6), 64, 100, False)  # unmeasured card: the kernel runs
    assert not sdpa_wins(None, 64, 100, False)


def test_forward_is_sdpa_and_restores_the_priority_order():
    before = torch._C._get_sdp_priority_order()
    q = torch.randn(1, 4, 33, 64)
    k, v = torch.randn(1, 2, 40, 64), torch.randn(1, 2, 40, 64)
    for causal in (False, True):
        o, lse = sdpa_fallback.forward(q, k, v, AttentionConfig(sm_scale=0.3, is_causal=causal))
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=0.3, enable_gqa=True)
        assert lse is None and torch.equal(o, expected)
        assert torch._C._get_sdp_priority_order() == before


def test_priority_order_is_the_one_sdpa_kernel_would_set():
    cudnn_first = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel(cudnn_first, set_priority=True):
        expected = torch._C._get_sdp_priority_order()
    assert sdpa_fallback._cudnn_first(tuple(torch._C._get_sdp_priority_order())) == expected

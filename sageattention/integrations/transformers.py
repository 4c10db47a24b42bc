"""transformers adapter: ``attn_implementation="sage"``.

    from sageattention.integrations import transformers as sage_transformers
    sage_transformers.register()
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="sage", dtype=torch.float16)

Calls sageattn serves (no attention mask, no dropout, fp16/bf16 CUDA, head dim <= 256, GQA) go to it; the rest
(padding masks, sliding windows, softcap, position bias, attention sinks) run transformers' own "sdpa"
function unchanged. Masks are built as for "sdpa", so a batch without padding gets no mask and the causal flag.
Counts land in ``sageattention.patch.stats()``. Needs transformers >= 4.53 (AttentionMaskInterface).
"""

from __future__ import annotations

import torch

from ..api import sageattn
from ..patch import fallback_reason, record

try:
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
except ImportError as exc:
    raise ImportError(
        f"sageattention's transformers adapter needs transformers >= 4.53 ({exc}); pip install 'transformers>=4.53'"
    ) from exc

NAME = "sage"
# Keyword arguments that change the attention math; sageattn computes none of them.
_UNSERVED_KWARGS = ("softcap", "position_bias", "s_aux", "sinks")


def sage_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask,
    dropout: float = 0.0,
    scaling=None,
    is_causal=None,
    **kwargs,
):
    """transformers' attention-function contract: q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D] in; [B, Lq, Hq, D] out."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(query.shape[2] > 1 and attention_mask is None and causal)  # decoding sees every cached key
    if any(kwargs.get(name) is not None for name in _UNSERVED_KWARGS) or kwargs.get("output_attentions"):
        reason = "argument"
    else:
        reason = fallback_reason(query, key, value, attention_mask, dropout, causal, scaling, enable_gqa=True)
    record(reason)
    if reason is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    if causal and key.shape[2] > query.shape[2]:
        # Top-left causal never sees keys past Lq (a static cache's empty tail): skip them.
        key, value = key[:, :, : query.shape[2]], value[:, :, : query.shape[2]]
    out = sageattn(query, key, value, tensor_layout="HND", is_causal=causal, sm_scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def register(name: str = NAME) -> None:
    """Registers the attention function and its mask builder (SDPA's) under `name`; safe to call again."""
    AttentionInterface.register(name, sage_attention_forward)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])

"""diffusers adapter: its "sage" attention backend, with a safe fallback.

Two ways in:

* ``with sageattention.patch_sdpa(): pipe(...)``: diffusers' default ("native") backend and its
  ``AttnProcessor2_0`` look ``torch.nn.functional.scaled_dot_product_attention`` up at call time, so every call
  sageattn serves is routed and the rest (e.g. a text encoder's masked attention) stays with SDPA.
* ``register()`` then ``model.set_attention_backend("sage")`` (or diffusers' ``attention_backend("sage")``
  context manager). diffusers names backends with a fixed enum that already holds "sage"; its own function
  raises on masks. ``register()`` makes that name run :func:`sage_backend`, which hands calls sageattn does
  not serve to diffusers' native backend. Context-parallel calls keep diffusers' own function.

``_AttentionBackendRegistry`` is diffusers' internal registry (checked against diffusers 0.35-0.42); if it
moves, ``register()`` raises ImportError and ``patch_sdpa()`` remains the supported route.
"""

from __future__ import annotations

from ..api import sageattn
from ..patch import fallback_reason, record

try:
    from diffusers.models import attention_dispatch as _dispatch

    _REGISTRY = _dispatch._AttentionBackendRegistry
    _SAGE = _dispatch.AttentionBackendName.SAGE
    _NATIVE = _dispatch.AttentionBackendName.NATIVE
except (ImportError, AttributeError) as exc:
    raise ImportError(
        f"sageattention's diffusers adapter needs diffusers >= 0.35 with attention backends ({exc}); "
        "pip install 'diffusers>=0.35', or use sageattention.patch_sdpa()"
    ) from exc

_diffusers_sage = None  # the function diffusers registered for "sage", kept for context-parallel calls


def sage_backend(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
    return_lse=False, _parallel_config=None,
):
    """diffusers' backend contract: q [B, Lq, Hq, D], k/v [B, Lk, Hkv, D] in, o [B, Lq, Hq, D] out."""
    if _parallel_config is not None:
        return _diffusers_sage(
            query, key, value, attn_mask=attn_mask, is_causal=is_causal, scale=scale, return_lse=return_lse,
            _parallel_config=_parallel_config,
        )
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))  # HND views for the shared routing rule
    reason = fallback_reason(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    record(reason)
    if reason is not None:
        return _REGISTRY._backends[_NATIVE](
            query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
            enable_gqa=enable_gqa, return_lse=return_lse,
        )
    return sageattn(query, key, value, tensor_layout="NHD", is_causal=is_causal, sm_scale=scale, return_lse=return_lse)


def register() -> None:
    """Makes diffusers' "sage" backend name run :func:`sage_backend`; safe to call again."""
    global _diffusers_sage
    if _REGISTRY._backends.get(_SAGE) is sage_backend:
        return
    _diffusers_sage = _REGISTRY._backends.get(_SAGE)
    parallel = _SAGE.value in _REGISTRY._supports_context_parallel
    _REGISTRY.register(_SAGE, constraints=[], supports_context_parallel=parallel)(sage_backend)
    # diffusers enables "sage" only when it finds the package's metadata (absent in a source checkout); this
    # function does not need diffusers' own import of sageattn.
    _dispatch._CAN_USE_SAGE_ATTN = True


def enable(model) -> None:
    """register(), then ``model.set_attention_backend("sage")`` for a diffusers ModelMixin."""
    register()
    model.set_attention_backend(_SAGE.value)

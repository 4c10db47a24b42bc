"""Training through sageattn: the quantized forward output, the exact-attention gradient.

When an input requires grad, api.py runs the kernel inside :class:`ExactGradAttention`. Forward returns the
kernel's output unchanged; backward recomputes unquantized attention on the saved inputs with PyTorch's own
SDPA and returns its vector-Jacobian product, so the gradient is that of exact attention at the same inputs
(the quantization is treated as straight-through). SDPA's fused backward keeps memory at O(L) on GPU.
A gradient that reaches the LSE output (``return_lse=True``) is served by a plain fp32 computation instead,
because SDPA does not return the LSE; that path holds the [Lq, Lk] scores.

``torch.func.vjp`` rather than ``torch.autograd.grad`` does the recomputation because Dynamo can trace it,
so a model compiled with ``fullgraph=True`` trains without a graph break.
"""

from __future__ import annotations

import torch

from .config import AttentionConfig

# PyTorch's builtin, never a patched torch.nn.functional attribute: a gradient must not be quantized.
_SDPA = torch._C._nn.scaled_dot_product_attention


def needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _repeat_kv(k: torch.Tensor, v: torch.Tensor, heads_q: int):
    # repeat_interleave instead of SDPA's enable_gqa: exact on every backend and torch >= 2.4; autograd sums
    # the copies back into the Hkv gradient.
    groups = heads_q // k.shape[1]
    if groups == 1:
        return k, v
    return k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)


def _keep_mask(cfg: AttentionConfig, lq: int, lk: int, device) -> torch.Tensor:
    """Bool [Lq, Lk], True where cfg's causal rule lets query i see key j."""
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril(cfg.causal_offset(lq, lk))


def sdpa_arguments(cfg: AttentionConfig, q: torch.Tensor, lk: int):
    """(attn_mask, is_causal) that make SDPA compute cfg's masking. SDPA's is_causal is top-left and cannot be
    combined with a mask, so bottom-right alignment (Lq != Lk) and masked causal calls get one explicit mask."""
    lq = q.shape[2]
    mask = cfg.attn_mask
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)  # SDPA wants a float mask in the query's dtype
    if not cfg.is_causal:
        return mask, False
    if mask is None and (cfg.causal_alignment == "top_left" or lq == lk):
        return None, True
    keep = _keep_mask(cfg, lq, lk, q.device)
    if mask is None:
        return keep, False
    if mask.dtype == torch.bool:
        return mask & keep, False
    return mask.masked_fill(~keep, float("-inf")), False


def exact_sdpa(q, k, v, cfg: AttentionConfig) -> torch.Tensor:
    """Unquantized attention with cfg's scale, causal rule, mask and GQA, through PyTorch SDPA (HND tensors)."""
    k, v = _repeat_kv(k, v, q.shape[1])
    mask, causal = sdpa_arguments(cfg, q, k.shape[2])
    return _SDPA(q, k, v, attn_mask=mask, is_causal=causal, scale=cfg.sm_scale)


def exact_with_lse(q, k, v, cfg: AttentionConfig):
    """Unquantized (o, lse) in fp32 math, for gradients that flow into the LSE."""
    k, v = _repeat_kv(k, v, q.shape[1])
    s = (q.float() @ k.float().transpose(-1, -2)) * cfg.sm_scale
    mask, causal = sdpa_arguments(cfg, q, k.shape[2])
    if causal:
        mask = _keep_mask(cfg, q.shape[2], k.shape[2], q.device)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.float()
    lse = torch.logsumexp(s, dim=-1)
    seen = torch.isfinite(lse)
    p = torch.exp(s - torch.where(seen, lse, torch.zeros_like(lse))[..., None])
    o = torch.where(seen[..., None], p @ v.float(), 0.0)
    return o.to(q.dtype), lse


class ExactGradAttention(torch.autograd.Function):
    """apply(q, k, v, forward, cfg): ``forward(q, k, v) -> (o, lse | None)`` runs the kernel."""

    @staticmethod
    def forward(ctx, q, k, v, forward, cfg):
        o, lse = forward(q, k, v)
        ctx.save_for_backward(q, k, v)
        ctx.cfg = cfg
        ctx.set_materialize_grads(False)
        return o if lse is None else (o, lse)

    @staticmethod
    def backward(ctx, grad_o, grad_lse=None):
        q, k, v = ctx.saved_tensors
        cfg = ctx.cfg
        if (grad_o is None and grad_lse is None) or q.numel() == 0 or k.shape[2] == 0:
            return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v), None, None
        if grad_lse is None:
            _, vjp = torch.func.vjp(lambda a, b, c: exact_sdpa(a, b, c, cfg), q, k, v)
            dq, dk, dv = vjp(grad_o)
        else:
            if grad_o is None:
                grad_o = q.new_zeros(*q.shape[:-1], v.shape[-1])
            _, vjp = torch.func.vjp(lambda a, b, c: exact_with_lse(a, b, c, cfg), q, k, v)
            dq, dk, dv = vjp((grad_o, grad_lse))
        return dq, dk, dv, None, None


def attention_with_exact_grad(forward, q, k, v, cfg: AttentionConfig):
    """(o, lse | None) from ``forward(q, k, v)``, differentiable with the exact-attention gradient."""
    out = ExactGradAttention.apply(q, k, v, forward, cfg)
    return out if isinstance(out, tuple) else (out, None)

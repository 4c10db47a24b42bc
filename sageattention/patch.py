"""Drop-in: route ``torch.nn.functional.scaled_dot_product_attention`` calls that sageattn serves to it.

``with patch_sdpa(): ...`` patches while inside; ``patch_sdpa(enable=True)`` / ``unpatch_sdpa()`` switch it on
and off for the whole process (both idempotent). The module attribute is replaced, so code that looks SDPA up
at call time (transformers' "sdpa" attention, diffusers' native backend, torch.nn.MultiheadAttention outside its
fused inference fast path) is routed; code that bound the function object earlier (``from torch.nn.functional import
scaled_dot_product_attention`` at import) is not. When nothing holds the patch, the exact original object is
restored.

A call is routed when: no attn_mask, dropout_p == 0, q/k/v all float16 or all bfloat16 on one CUDA device,
4-D [B, H, L, D] with one batch size, k and v of one shape, head dim <= 256, Hq == Hkv (or Hq % Hkv == 0 with
enable_gqa=True), a positive ``scale`` or None, and a sageattention GPU kernel for that GPU and head dim.
It becomes ``sageattn(q, k, v, tensor_layout="HND", is_causal=is_causal, sm_scale=scale)``; SDPA's is_causal
is top-left, as is sageattn's default. Inputs that require grad are routed too: the output is quantized and
the gradient is exact attention's (sageattention/autograd.py). Every other call goes to the original SDPA
with the caller's arguments unchanged, so its result is bit-identical to an unpatched call.

Counters by reason: ``stats()`` / ``reset_stats()``; the first call of each reason is logged (INFO) on the
``sageattention.patch`` logger. Calls traced by torch.compile are not counted (the count would run only
while tracing).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import Counter
from typing import Optional

import torch
import torch.nn.functional as F

from .api import sageattn
from .config import MAX_HEAD_DIM, SERVED_DTYPES
from .dispatch import _compile_constant, select

logger = logging.getLogger(__name__)

ROUTED = "routed"
# reason -> why the call stayed with PyTorch's SDPA (also the text logged the first time)
FALLBACK_REASONS = {
    "attn_mask": "an attn_mask was given (sageattn takes only the is_causal flag)",
    "dropout": "dropout_p > 0",
    "dtype": "q, k and v are not all float16 or all bfloat16",
    "device": "q, k and v are not on one device of a routed type (CUDA)",
    "shape": "q, k, v are not 4-D [B, H, L, D] with one batch size and k, v of one shape and q's head dim",
    "head_dim": f"head dim above {MAX_HEAD_DIM}",
    "heads": "q heads differ from k/v heads without enable_gqa=True, or are not a multiple of them",
    "scale": "scale is not a positive finite number",
    "empty": "a q, k or v dimension is zero",
    "short_query": "fewer queries than patch.MIN_QUERY_LEN",
    "argument": "an argument sageattn does not take (nested tensor, non-bool is_causal, or a newer SDPA keyword)",
    "no_kernel": "no sageattention GPU kernel for this GPU and head dim (the PyTorch reference is slower than SDPA)",
}

# Device types whose calls are routed. Tests add "cpu" to run the routing through the PyTorch reference.
ROUTED_DEVICE_TYPES = ("cuda",)
# Calls with fewer queries stay with SDPA. With few queries (decoding) attention is bound by reading K and V,
# and sageattn reads K once more to quantize it, so it cannot win there; the crossover is a measurement for
# benchmarks/, so the default routes every length.
MIN_QUERY_LEN = 1

_original_sdpa = F.scaled_dot_product_attention
_counts: Counter = Counter()
_logged: set = set()
_state_lock = threading.Lock()
_global_on = False
_contexts = 0
_kernel_cache: dict = {}


def stats() -> dict:
    """Calls seen while patched (and by the adapters): {"routed": n, "<fallback reason>": n, ...}."""
    return dict(_counts)


def reset_stats() -> None:
    _counts.clear()
    _logged.clear()


def record(reason: Optional[str]) -> None:
    """Counts one call: ``None`` = routed to sageattn, else a key of FALLBACK_REASONS."""
    if torch.compiler.is_compiling():
        return
    key = ROUTED if reason is None else reason
    _counts[key] += 1
    if key not in _logged:
        _logged.add(key)
        if reason is None:
            logger.info("routing scaled_dot_product_attention calls to sageattn")
        else:
            logger.info("left a scaled_dot_product_attention call to PyTorch: %s", FALLBACK_REASONS[key])


@_compile_constant
def _has_gpu_kernel(device_index: int, head_dim: int) -> bool:
    # Cached per (GPU, head dim): dispatch.select imports kernel modules. A constant for Dynamo.
    key = (device_index, head_dim)
    if key not in _kernel_cache:
        backend, _ = select(torch.device("cuda", device_index), head_dim)
        _kernel_cache[key] = backend.name != "reference"
    return _kernel_cache[key]


def fallback_reason(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """None when sageattn serves this SDPA call, else the key of FALLBACK_REASONS that says why not."""
    if attn_mask is not None:
        return "attn_mask"
    if not isinstance(dropout_p, (int, float)) or dropout_p != 0:
        return "dropout"
    if not isinstance(is_causal, bool) or query.is_nested or key.is_nested or value.is_nested:
        return "argument"
    if query.dtype not in SERVED_DTYPES or key.dtype != query.dtype or value.dtype != query.dtype:
        return "dtype"
    device = query.device
    if device.type not in ROUTED_DEVICE_TYPES or key.device != device or value.device != device:
        return "device"
    if query.dim() != 4 or key.dim() != 4 or key.shape != value.shape:
        return "shape"
    b, hq, lq, d = query.shape
    if key.shape[0] != b or key.shape[3] != d:
        return "shape"
    if d > MAX_HEAD_DIM:
        return "head_dim"
    hkv, lk = key.shape[1], key.shape[2]
    if b == 0 or hq == 0 or hkv == 0 or lq == 0 or lk == 0 or d == 0:
        return "empty"
    if lq < MIN_QUERY_LEN:
        return "short_query"
    if hq != hkv and not (enable_gqa and hq % hkv == 0):
        return "heads"
    if scale is not None and not (isinstance(scale, (int, float)) and 0 < scale < math.inf):
        return "scale"
    if device.type == "cuda" and not _has_gpu_kernel(device.index if device.index is not None else 0, d):
        return "no_kernel"
    return None


def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None, enable_gqa=False, **kwargs
):
    """The patched SDPA: sageattn where it serves the call, otherwise the original SDPA."""
    reason = "argument" if kwargs else fallback_reason(
        query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa
    )
    record(reason)
    if reason is None:
        return sageattn(query, key, value, tensor_layout="HND", is_causal=is_causal, sm_scale=scale)
    if enable_gqa:  # passed only when set: torch 2.4's SDPA has no enable_gqa
        kwargs["enable_gqa"] = enable_gqa
    return _original_sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **kwargs)


def _apply() -> None:
    """Installs the wrapper while anything holds the patch, restores the original when nothing does."""
    global _original_sdpa
    installed = F.scaled_dot_product_attention is scaled_dot_product_attention
    if (_global_on or _contexts > 0) and not installed:
        _original_sdpa = F.scaled_dot_product_attention  # whatever is current, so unpatching restores it exactly
        F.scaled_dot_product_attention = scaled_dot_product_attention
    elif not (_global_on or _contexts > 0) and installed:
        F.scaled_dot_product_attention = _original_sdpa


def is_patched() -> bool:
    return F.scaled_dot_product_attention is scaled_dot_product_attention


@contextlib.contextmanager
def _patched():
    global _contexts
    with _state_lock:
        _contexts += 1
        _apply()
    try:
        yield
    finally:
        with _state_lock:
            _contexts -= 1
            _apply()


def patch_sdpa(enable: Optional[bool] = None):
    """``with patch_sdpa(): ...`` patches inside the block (nestable). ``patch_sdpa(enable=True)`` patches for
    the whole process, ``patch_sdpa(enable=False)`` (or ``unpatch_sdpa()``) removes that; both idempotent.
    The patch is process-wide: other threads calling SDPA meanwhile are routed too."""
    global _global_on
    if enable is None:
        return _patched()
    if not isinstance(enable, bool):
        raise TypeError(f"enable must be True, False or None (context manager), got {enable!r}")
    with _state_lock:
        _global_on = enable
        _apply()
    return None


def unpatch_sdpa() -> None:
    """Turns the global switch off; open ``with patch_sdpa()`` blocks keep their patch until they exit."""
    patch_sdpa(enable=False)

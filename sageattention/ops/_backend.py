"""What the CUDA backends share: the availability check, and when a call may skip the registered ops."""

from __future__ import annotations

from typing import Optional

import torch

from .._ext import ExtensionUnavailable, load


def unavailable(device: torch.device, module: str, min_cc: tuple, what: str) -> Optional[str]:
    """None when `module` and the quantization module load for `device` and its GPU is at least `min_cc`."""
    if device.type != "cuda":
        return f"{what} needs a CUDA device, got {device.type}"
    cc = torch.cuda.get_device_capability(device)
    if tuple(cc) < min_cc:
        return f"{what} needs compute capability >= {min_cc[0]}.{min_cc[1]}, this GPU is {cc[0]}.{cc[1]}"
    try:
        load("_C_quant", device)
        load(module, device)
    except ExtensionUnavailable as exc:
        return str(exc)
    return None


def direct_call(*tensors: torch.Tensor) -> bool:
    """True when an eager call may run the ops' implementations straight from Python rather than through the
    torch.library ops: nothing is being traced (torch.compile) and every tensor is a plain torch.Tensor (fake,
    functional and other subclass tensors must see the registered op and its fake). The op layer costs ~40 us of
    host time per op (H100 host, benchmarks/NOTES.md), a call's whole GPU time at short lengths."""
    return not torch.compiler.is_compiling() and all(type(t) is torch.Tensor for t in tensors)

"""What the sm80 and sm89 backends share: the availability check."""

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

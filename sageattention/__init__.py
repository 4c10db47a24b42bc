"""sageattention: 8-bit attention kernels (INT8 Q·Kᵀ with K smoothing, FP16/FP8 P·V) for PyTorch."""

from ._version import __version__
from .api import (
    KernelUnavailableError,
    sageattn,
    sageattn_qk_int8_pv_fp16_cuda,
    sageattn_qk_int8_pv_fp16_triton,
    sageattn_qk_int8_pv_fp8_cuda,
    sageattn_qk_int8_pv_fp8_cuda_sm90,
    sageattn_varlen,
)
from .patch import patch_sdpa, unpatch_sdpa

__all__ = [
    "__version__",
    "KernelUnavailableError",
    "sageattn",
    "sageattn_varlen",
    "sageattn_qk_int8_pv_fp16_triton",
    "sageattn_qk_int8_pv_fp16_cuda",
    "sageattn_qk_int8_pv_fp8_cuda",
    "sageattn_qk_int8_pv_fp8_cuda_sm90",
    "patch_sdpa",
    "unpatch_sdpa",
]

"""Triton kernels: per-block INT8 quantization of Q and K (K smoothing fused) and INT8 Q·Kᵀ attention with
FP16 or FP8 P·V. ``backend`` is the dispatch entry point; ``ops`` registers the launches as torch.library ops.
Importing this package needs Triton; ``backend.available`` reports why it cannot run instead of raising."""

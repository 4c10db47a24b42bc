#!/usr/bin/env python3
"""Where the time of a short sageattn call goes on an sm90 GPU: the eager call, the same call replayed from a CUDA
graph (no host cost), quantization alone, the sm90 kernel alone, and SDPA cuDNN; B=2 H=32 fp16.

    PYTHONPATH=. python3 benchmarks/bench_short_sequences.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

from sageattention import sageattn
from sageattention.config import AttentionConfig
from sageattention.ops import quant, sm90

B, H = 2, 32


def main() -> None:
    print(torch.cuda.get_device_name())
    for d, n in ((128, 1024), (128, 2048), (128, 4096), (64, 1024)):
        q, k, v = (torch.randn(B, H, n, d, device="cuda", dtype=torch.float16) for _ in range(3))
        flops = 4 * B * H * n * n * d

        def tops(ms: float) -> float:
            return flops / ms / 1e9

        eager = do_bench(lambda: sageattn(q, k, v, backend="sm90"), warmup=50, rep=300)
        graph = torch.cuda.CUDAGraph()
        sageattn(q, k, v, backend="sm90")
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            sageattn(q, k, v, backend="sm90")
        replay = do_bench(graph.replay, warmup=50, rep=300)
        cfg = AttentionConfig(sm_scale=d ** -0.5, pv="fp8", pv_accum_dtype="fp32+fp32", qk_quant_gran="per_thread",
                              head_dim=d)
        quant_ms = do_bench(lambda: quant.quantize_qkv(q, k, v, cfg, warp_rows=16), rep=300)
        qk, (vt, vs, _) = quant.quantize_qkv(q, k, v, cfg, warp_rows=16)
        out = torch.empty_like(q)
        kernel = do_bench(lambda: sm90.run_kernel(qk, vt, vs, None, quant.qk_scale(cfg), out, None, False, 0,
                                                  "fp32+fp32"), rep=300)
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            cudnn = do_bench(lambda: F.scaled_dot_product_attention(q, k, v), warmup=50, rep=300)
        print(f"D={d} N={n}: eager {eager * 1e3:.0f} us ({tops(eager):.0f} TOPS) | graph {replay * 1e3:.0f} us "
              f"({tops(replay):.0f}) | quant alone {quant_ms * 1e3:.0f} us | kernel alone {kernel * 1e3:.0f} us "
              f"({tops(kernel):.0f}) | cuDNN {cudnn * 1e3:.0f} us ({tops(cudnn):.0f})")


if __name__ == "__main__":
    main()

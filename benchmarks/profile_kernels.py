"""Where one attention call's GPU time goes, kernel by kernel (torch.profiler), or one call alone for ncu.

    PYTHONPATH=. python benchmarks/profile_kernels.py --backend triton --n 8192 --d 64
    ncu --kernel-name regex:attention --launch-skip 3 --launch-count 1 --section SourceCounters \
        python benchmarks/profile_kernels.py --backend sm90 --n 8192 --d 128 --once

--backend sa106 imports the PyPI package sageattention 1.0.6 instead (put its --target folder first on PYTHONPATH).
Inputs: B=2, H=32 randn in HND, as benchmarks/bench_attention.py.
"""

from __future__ import annotations

import argparse

import torch


def call_for(backend: str):
    import sageattention

    if backend == "sa106":
        return lambda q, k, v, causal: sageattention.sageattn(q, k, v, tensor_layout="HND", is_causal=causal)
    return lambda q, k, v, causal: sageattention.sageattn(q, k, v, is_causal=causal, backend=backend)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", required=True)
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--once", action="store_true", help="3 warm-up calls and one more, nothing measured (for ncu)")
    args = p.parse_args(argv)

    dtype = getattr(torch, args.dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(args.batch, args.heads, args.n, args.d, device="cuda", generator=g).to(dtype)
               for _ in range(3))
    fn = call_for(args.backend)
    for _ in range(3):
        fn(q, k, v, args.causal)
    torch.cuda.synchronize()
    if args.once:
        fn(q, k, v, args.causal)
        torch.cuda.synchronize()
        return 0

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(args.iters):
            fn(q, k, v, args.causal)
        torch.cuda.synchronize()
    per_kernel = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            per_kernel[e.name] = per_kernel.get(e.name, 0.0) + e.device_time / args.iters
    total = sum(per_kernel.values())
    flops = 4 * args.batch * args.heads * args.n * args.n * args.d / (2 if args.causal else 1)
    print(f"{args.backend} N={args.n} D={args.d} causal={args.causal} {args.dtype}: "
          f"GPU {total / 1e3:.3f} ms per call ({flops / total / 1e6:.0f} TOPS on GPU time)")
    for name, us in sorted(per_kernel.items(), key=lambda kv: -kv[1]):
        print(f"  {us / 1e3:8.3f} ms {100 * us / total:5.1f}%  {name[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

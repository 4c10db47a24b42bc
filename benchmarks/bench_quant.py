#!/usr/bin/env python3
"""Bandwidth of the CUDA quantization kernels next to a device-to-device copy of the same tensor.

    python benchmarks/bench_quant.py [--n 16384] [--b 2] [--h 32] [--d 128]

Bytes are the fewest each op must move (input read once, outputs written once); "% copy" divides that rate by
the copy's (bytes read + written). Target (issue 4): >= 70% of copy bandwidth at N = 16K on an H100."""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench_ms(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=50, rep=300, return_mode="median")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--b", type=int, default=2)
    ap.add_argument("--h", type=int, default=32)
    ap.add_argument("--d", type=int, default=128)
    args = ap.parse_args()
    from sageattention.ops import quant

    b, h, n, d = args.b, args.h, args.n, args.d
    x = torch.randn(b, h, n, d, device="cuda", dtype=torch.float16)
    x_nhd = torch.randn(b, n, h, d, device="cuda", dtype=torch.float16).transpose(1, 2)
    elems, el16 = x.numel(), x.numel() * 2
    dst = torch.empty_like(x)
    mean = quant.seq_mean(x)
    rows = []

    def row(name, fn, nbytes):
        ms = bench_ms(fn)
        rows.append((name, ms, nbytes / ms / 1e6))

    row("copy (fp16 -> fp16)", lambda: dst.copy_(x), 2 * el16)
    row("seq_mean (K mean)", lambda: quant.seq_mean(x), el16)
    row("quant_int8 Q per_thread/32", lambda: quant.quant_int8(x, None, 32, 8), el16 + elems)
    row("quant_int8 K per_thread, -mean", lambda: quant.quant_int8(x, mean, 64, 4), el16 + elems)
    row("quant_int8 K NHD input, -mean", lambda: quant.quant_int8(x_nhd, mean, 64, 4), el16 + elems)
    row("quant_v_fp8 (stats + quant)", lambda: quant.quant_v_fp8(x, True), el16 + elems)
    copy_bw = rows[0][2]
    print(f"\nB={b} H={h} N={n} D={d} fp16 on {torch.cuda.get_device_name()}")
    print(f"{'op':34s} {'ms':>8s} {'GB/s':>8s} {'% copy':>7s}")
    for name, ms, bw in rows:
        print(f"{name:34s} {ms:8.3f} {bw:8.0f} {100 * bw / copy_bw:6.0f}%")


if __name__ == "__main__":
    main()

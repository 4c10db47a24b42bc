"""`python -m sageattention {info,check,bench}`: what is installed, whether it is right, how fast it is."""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from . import __version__, sageattn
from .api import _sdpa_serves
from .dispatch import BACKENDS, DISPATCH_TABLE, chain_for, padded_head_dim, select, unavailable_reason
from .reference import exact_attention

# Accuracy floors for `check`, per P·V precision (what the quantized algorithm keeps on randn inputs, with
# margin; measured on CPU for B=1, H=4, N=1000, D=128: fp16 path cos 0.99991 / rel-L1 0.013, fp8 path cos
# 0.99928 / rel-L1 0.038, since e4m3 P and V each keep 3 mantissa bits).
CHECK_FLOORS = {"fp16": (0.9995, 0.03), "fp8": (0.999, 0.05)}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    denom = a.norm() * b.norm()
    return float((a @ b) / denom) if denom > 0 else float("nan")


def rel_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().sum() / b.double().abs().sum())


def _devices() -> list:
    if not torch.cuda.is_available():
        return []
    return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]


def cmd_info(_args) -> int:
    print(f"sageattention {__version__}")
    print(f"python        {platform.python_version()} ({sys.executable})")
    print(f"torch         {torch.__version__} (CUDA {torch.version.cuda or 'none'}, "
          f"cxx11 ABI {int(torch.compiled_with_cxx11_abi())})")
    try:
        import triton

        print(f"triton        {triton.__version__}")
    except ImportError:
        print("triton        not installed")
    try:
        from . import _ext

        print(f"build         {_ext.summary()}")
        if _ext.build_info() is not None:  # per-module load state; nothing to list for a pure-Python install
            for name, state in _ext.status().items():
                print(f"  {name:<12}{state}")
    except ImportError:
        print("build         pure Python (no CUDA extension machinery)")
    devices = _devices()
    if not devices:
        print("GPUs          none: sageattn runs the PyTorch reference on CPU tensors")
    for dev in devices:
        cap = torch.cuda.get_device_capability(dev)
        print(f"GPU {dev.index}         {torch.cuda.get_device_name(dev)} (sm_{cap[0]}{cap[1]})")
        for d in (64, 128, 256):
            chosen, skipped = select(dev, d)
            why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
            print(f"  head dim {d:<4}-> {chosen.name}" + (f"   (passed over: {why})" if why else ""))
        for name in chain_for(cap):
            reason = unavailable_reason(name, dev)
            print(f"  {name:<12}{'available' if reason is None else reason}")
    print("dispatch table:")
    for cap, chain in DISPATCH_TABLE.items():
        print(f"  sm_{cap[0]}{cap[1]:<3} {' > '.join(chain)}")
    print("  other   triton; CPU tensors: reference")
    return 0


def _check_cases(device: torch.device):
    """(label, B, Hq, Hkv, Lq, Lk, D, causal, layout, k_bias)"""
    n = 1000 if device.type == "cpu" else 4096
    return [
        ("randn", 1, 4, 4, n, n, 128, False, "HND", 0.0),
        ("biased K", 1, 4, 4, n, n, 128, False, "HND", 8.0),
        ("GQA causal NHD", 1, 8, 2, 513, 513, 64, True, "NHD", 4.0),
        ("Lq != Lk, D=96", 2, 2, 2, 17, 300, 96, False, "HND", 0.0),
    ]


def _check_paths(device: torch.device, head_dim: int, q, k, causal: bool) -> list:
    """(label, backend= value, P·V precision): the path sageattn dispatches to, then every other compiled kernel
    on a GPU, so a card whose calls SDPA serves still has its kernels checked."""
    chosen, _ = select(device, head_dim)
    first = ("sdpa", "auto", "fp16") if _sdpa_serves(q, k, causal, "top_left", False) else (chosen.name, "auto", chosen.pv)
    paths = [first]
    if device.type == "cuda":
        for name, backend in BACKENDS.items():
            if name not in ("reference", first[0]) and padded_head_dim(backend, head_dim) is not None \
                    and unavailable_reason(name, device) is None:
                paths.append((name, name, backend.pv))
    return paths


def cmd_check(args) -> int:
    device = torch.device(args.device) if args.device else (_devices() or [torch.device("cpu")])[0]
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    print(f"sageattention {__version__} check on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), {args.dtype}")
    print(f"{'case':<18}{'path':<11}{'cos':>10}{'rel-L1':>9}  result")
    failures = 0
    for label, b, hq, hkv, lq, lk, d, causal, layout, bias in _check_cases(device):
        q = torch.randn(b, hq, lq, d, generator=gen)
        k = torch.randn(b, hkv, lk, d, generator=gen) + bias * torch.randn(1, 1, 1, d, generator=gen)
        v = torch.randn(b, hkv, lk, d, generator=gen)
        q, k, v = (x.to(device=device, dtype=dtype) for x in (q, k, v))
        ref, _ = exact_attention(q, k, v, is_causal=causal)
        for name, backend_arg, pv in _check_paths(device, d, q, k, causal):
            if layout == "NHD":
                nhd = (x.transpose(1, 2) for x in (q, k, v))
                out = sageattn(*nhd, tensor_layout="NHD", is_causal=causal, backend=backend_arg).transpose(1, 2)
            else:
                out = sageattn(q, k, v, is_causal=causal, backend=backend_arg)
            cos, l1 = cosine(out, ref), rel_l1(out, ref)
            min_cos, max_l1 = CHECK_FLOORS[pv]
            ok = bool(torch.isfinite(out).all()) and cos >= min_cos and l1 <= max_l1
            failures += not ok
            verdict = "ok" if ok else f"FAIL (needs cos >= {min_cos}, rel-L1 <= {max_l1})"
            print(f"{label:<18}{name:<11}{cos:>10.6f}{l1:>9.4f}  {verdict}")
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0


def _time_ms(fn, device: torch.device, reps: int) -> float:
    fn()  # warm-up: compilation, autotuning and allocation stay out of the numbers
    if device.type == "cuda":
        try:
            from triton.testing import do_bench

            return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
        except ImportError:
            pass
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(reps):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def _sdpa_backends(device: torch.device) -> dict:
    from torch.nn.attention import SDPBackend

    if device.type == "cpu":
        return {"SDPA math": SDPBackend.MATH}
    return {
        "SDPA flash": SDPBackend.FLASH_ATTENTION,
        "SDPA cuDNN": SDPBackend.CUDNN_ATTENTION,
        "SDPA efficient": SDPBackend.EFFICIENT_ATTENTION,
    }


def cmd_bench(args) -> int:
    from torch.nn.attention import sdpa_kernel

    device = torch.device(args.device) if args.device else (_devices() or [torch.device("cpu")])[0]
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu":
        print("no GPU: timing the PyTorch reference on CPU (not representative of kernel speed)")
        default_n, reps = [1024], 3
    else:
        default_n, reps = [1024, 4096, 16384], 20
    lengths = args.seqlen or default_n
    print(f"{'N':>7}{'D':>5} {'causal':<7}{'path':<26}{'ms':>10}{'TOPS':>9}")
    for n in lengths:
        b, h, d = args.batch, args.heads, args.head_dim
        q, k, v = (torch.randn(b, h, n, d, device=device, dtype=dtype) for _ in range(3))
        flops = 4 * b * h * n * n * d / (2 if args.causal else 1)
        backend, _ = select(device, d)
        paths = {f"sageattn ({backend.name})": lambda: sageattn(q, k, v, is_causal=args.causal)}
        for name, kind in _sdpa_backends(device).items():
            def run(kind=kind):
                with sdpa_kernel(kind):
                    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=args.causal)
            paths[name] = run
        for name, fn in paths.items():
            try:
                ms = _time_ms(fn, device, reps)
            except RuntimeError as exc:  # an SDPA backend that cannot serve this shape or card
                print(f"{n:>7}{d:>5} {str(args.causal):<7}{name:<26}{'n/a':>10}  ({str(exc).splitlines()[0][:60]})")
                continue
            print(f"{n:>7}{d:>5} {str(args.causal):<7}{name:<26}{ms:>10.3f}{flops / ms / 1e9:>9.3g}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sageattention", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, GPUs, compiled kernels and what sageattn dispatches to")
    check = sub.add_parser("check", help="accuracy of the dispatched path against fp32 attention")
    bench = sub.add_parser("bench", help="TOPS of sageattn beside the SDPA backends")
    for p in (check, bench):
        p.add_argument("--device", help="e.g. cuda:0 or cpu (default: first GPU, else CPU)")
        p.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    check.add_argument("--seed", type=int, default=0)
    bench.add_argument("--seqlen", type=int, nargs="*", help="sequence lengths (default 1K on CPU; 1K 4K 16K on GPU)")
    bench.add_argument("--batch", type=int, default=2)
    bench.add_argument("--heads", type=int, default=32)
    bench.add_argument("--head-dim", type=int, default=128)
    bench.add_argument("--causal", action="store_true")
    args = parser.parse_args(argv)
    return {"info": cmd_info, "check": cmd_check, "bench": cmd_bench}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Runs compute-sanitizer (memcheck, racecheck) over a small case of every sageattention CUDA kernel.

    python scripts/sanitize_cuda.py            # both tools; exit status 1 on any reported error
    python scripts/sanitize_cuda.py --case     # the workload alone (what the sanitizer runs)
    SANITIZE_ONLY=sm80 python scripts/sanitize_cuda.py   # one kernel family (sm80, sm89, quant, triton_sm90)

Only kernels whose names contain "sage" are instrumented, so torch's own kernels cost nothing; the Hopper Gluon
kernel (sageattention/triton/attention_sm90.py) runs in a pass of its own, filtered by its name. Lengths are odd
(partial tiles, zero-filled rows), causal and GQA are on, both head dims and every accumulation mode run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

TOOLS = ("memcheck", "racecheck")
# (kernel-name filter, SANITIZE_ONLY for the workload): the CUDA extension's kernels, then the Gluon kernel
PASSES = (("kns=sage", None), ("kns=attention_fwd_sm90", "triton_sm90"))


def run_case() -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import torch

    from sageattention.config import AttentionConfig
    from sageattention.ops import sm80, sm89

    dev = torch.device("cuda")
    only = os.environ.get("SANITIZE_ONLY")
    if not only or only == "quant":
        from sageattention.ops import quant

        # three statistics splits per head (the last-block finish and its counters), GQA-shaped Q, ragged tails
        for d in (64, 128):
            q = torch.randn(2, 4, 1100, d, device=dev, dtype=torch.bfloat16)
            k, v = (torch.randn(2, 2, 1100, d, device=dev, dtype=torch.bfloat16) for _ in range(2))
            out = quant.quant_qkv(q, k, v, 16, 8, 4, True, True)
            torch.cuda.synchronize()
            print(f"quant_qkv d={d}: ok, k mean |.| {out[4].abs().mean():.3f}")
    if only == "triton_sm90":
        run_triton_sm90_case(dev)
        return
    for module, modes in ((sm80, ("fp32", "fp16+fp32", "fp16")), (sm89, ("fp32", "fp32+fp32", "fp32+fp16"))):
        if only and not module.__name__.endswith(only):
            continue
        reason = module.available(dev)
        if reason is not None:
            print(f"skip {module.__name__}: {reason}")
            continue
        for d in (64, 128):
            for mode in modes:
                q = torch.randn(1, 4, 130, d, device=dev, dtype=torch.float16)
                k, v = (torch.randn(1, 2, 77, d, device=dev, dtype=torch.float16) for _ in range(2))
                cfg = AttentionConfig(sm_scale=d**-0.5, is_causal=True, causal_alignment="bottom_right",
                                      pv="fp16" if module is sm80 else "fp8", pv_accum_dtype=mode,
                                      qk_quant_gran="per_thread", smooth_v=True, return_lse=True, head_dim=d)
                o, _ = module.forward(q, k, v, cfg)
                torch.cuda.synchronize()
                print(f"{module.__name__} d={d} {mode}: ok, |o| mean {o.float().abs().mean():.3f}")


def run_triton_sm90_case(dev) -> None:
    """The Gluon kernel on ragged lengths, GQA, both causal alignments (rows with no key too) and LSE."""
    import torch

    from sageattention.config import AttentionConfig
    from sageattention.triton import backend, ops

    if torch.cuda.get_device_capability(dev)[0] != 9 or ops.sm90_kernels is None:
        print("skip triton_sm90: needs sm90 and Triton's Gluon")
        return
    for causal, align, lq, lk in ((False, "top_left", 130, 77), (True, "top_left", 200, 200),
                                  (True, "bottom_right", 190, 100)):
        q = torch.randn(1, 4, lq, 64, device=dev, dtype=torch.float16)
        k, v = (torch.randn(1, 2, lk, 64, device=dev, dtype=torch.float16) for _ in range(2))
        cfg = AttentionConfig(sm_scale=0.125, is_causal=causal, causal_alignment=align, return_lse=True, head_dim=64)
        o, _ = backend.forward(q, k, v, cfg)
        torch.cuda.synchronize()
        print(f"triton_sm90 causal={causal} {align} {lq}x{lk}: ok, |o| mean {o.float().abs().mean():.3f}")


def main() -> int:
    if "--case" in sys.argv:
        run_case()
        return 0
    sanitizer = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    failed = []
    only = os.environ.get("SANITIZE_ONLY")
    for kernels, family in PASSES:
        if only and (only == "triton_sm90") != (family == "triton_sm90"):
            continue
        env = dict(os.environ, **({"SANITIZE_ONLY": family} if family else {}))
        for tool in TOOLS:
            cmd = [sanitizer, f"--tool={tool}", "--error-exitcode=1", "--kernel-name", kernels,
                   sys.executable, os.path.abspath(__file__), "--case"]
            print("$", " ".join(cmd), flush=True)
            result = subprocess.run(cmd, text=True, capture_output=True, env=env)
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
            print(tail, flush=True)
            if result.returncode != 0:
                failed.append(f"{tool} ({kernels})")
    print(f"compute-sanitizer: {'errors in ' + ', '.join(failed) if failed else 'clean'} ({', '.join(TOOLS)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

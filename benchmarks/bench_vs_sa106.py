"""sageattention (one backend) against sageattention 1.0.6 in the same process, timed in alternating rounds.

    PYTHONPATH=. python benchmarks/bench_vs_sa106.py --sa106 /tmp/sa106 --backend triton --d 64 --out $OUT/ab.json

bench_attention.py times each backend once per shape; on a card at its power cap a single pair of timings moves
by a few percent (1.0.6's rows in earlier child-process runs moved by up to 15%). Here each round times both on
the same inputs, in alternating order, so each ratio compares two measurements taken seconds apart; 1.0.6 is
imported under another name (bench_attention.import_sa106). TOPS = 4·B·H·N²·D / t
(halved when causal), t the median of triton.testing.do_bench, quantization included in both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sa106", required=True, help="folder where sageattention 1.0.6 is installed (pip install --target)")
    p.add_argument("--backend", default="triton",
                   help="sageattention backend to compare (default triton; triton-portable: without attention_sm90)")
    p.add_argument("--n", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    p.add_argument("--d", type=int, nargs="+", default=[64, 128])
    p.add_argument("--causal", type=int, nargs="+", default=[0, 1])
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out", help="JSON path")
    args = p.parse_args(argv)

    import triton
    from bench_attention import cosine, make_inputs, sa106_fn, sage_fn  # this script's folder is first on sys.path

    ours = sage_fn(args.backend)
    theirs = sa106_fn(args.sa106)
    dtype = getattr(torch, args.dtype)
    rows = []
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}; "
          f"B={args.batch} H={args.heads} {args.dtype}; {args.rounds} alternating rounds")
    print(f"{'D':>4} {'causal':>6} {'N':>6} {args.backend:>9} {'sa106':>7} {'ratio':>6} {'min':>6} {'max':>6} {'cos':>8}")
    for d in args.d:
        for causal in map(bool, args.causal):
            for n in args.n:
                q, k, v = make_inputs(args.batch, args.heads, n, d, dtype)
                flops = 4 * args.batch * args.heads * n * n * d / (2 if causal else 1)
                o_ours, o_theirs = ours(q, k, v, causal), theirs(q, k, v, causal)  # compile outside the timing
                cos = cosine(o_ours, o_theirs)  # same algorithm family: a wrong call shows here
                torch.cuda.synchronize()
                t_ours, t_theirs = [], []
                for r in range(args.rounds):
                    order = [(ours, t_ours), (theirs, t_theirs)]
                    for fn, sink in order if r % 2 == 0 else order[::-1]:
                        sink.append(triton.testing.do_bench(lambda: fn(q, k, v, causal), warmup=25, rep=200,
                                                            return_mode="median"))
                ratios = [b / a for a, b in zip(t_ours, t_theirs)]
                row = dict(d=d, causal=causal, n=n, dtype=args.dtype, backend=args.backend,
                           ms_ours=t_ours, ms_sa106=t_theirs, ratios=ratios,
                           tops_ours=flops / statistics.median(t_ours) / 1e9,
                           tops_sa106=flops / statistics.median(t_theirs) / 1e9,
                           ratio=statistics.median(ratios), cos_vs_sa106=cos)
                rows.append(row)
                print(f"{d:>4} {int(causal):>6} {n:>6} {row['tops_ours']:>9.0f} {row['tops_sa106']:>7.0f} "
                      f"{row['ratio']:>6.3f} {min(ratios):>6.3f} {max(ratios):>6.3f} {cos:>8.5f}", flush=True)
    meta = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                python=platform.python_version(), batch=args.batch, heads=args.heads, rounds=args.rounds,
                time=time.strftime("%Y-%m-%dT%H:%M:%S"), command=" ".join([os.path.basename(__file__)] + sys.argv[1:]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

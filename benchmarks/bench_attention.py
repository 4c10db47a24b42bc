"""Throughput (TOPS, quantization included) and accuracy of every sageattention backend beside SDPA flash,
SDPA cuDNN and sageattention 1.0.6 (PyPI), which is imported under another name (ALIAS) from its pip --target
folder and measured in the same loop, right after this package's rows for the same shape.

    PYTHONPATH=. python benchmarks/bench_attention.py --quick
    PYTHONPATH=. python benchmarks/bench_attention.py --sa106 /tmp/sa106 --out $OUT/bench.json

TOPS = 4·B·H·N²·D / t (halved when causal); t is the median of triton.testing.do_bench on random inputs.
Accuracy: cosine and relative L1 against fp32 attention on fresh randn inputs and on inputs whose K has a
per-channel bias, for the first ACC_HEADS heads of batch 0 at N ≤ ACC_MAX_N.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ACC_HEADS, ACC_MAX_N, K_BIAS = 2, 8192, 5.0
FULL = dict(n=(1024, 2048, 4096, 8192, 16384, 32768), d=(64, 128), causal=(False, True), dtype=("float16", "bfloat16"))
QUICK = dict(n=(1024, 4096, 16384), d=(64, 128), causal=(False, True), dtype=("float16",))


def cosine(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def rel_l1(a, b):
    return float((a.double() - b.double()).abs().sum() / b.double().abs().sum())


def make_inputs(b, h, n, d, dtype, k_bias=0.0, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, device="cuda", generator=g) for _ in range(3))
    k = k + k_bias * torch.randn(1, 1, 1, d, device="cuda", generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def exact(q, k, v, causal):
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)


def accuracy(fn, n, d, dtype, causal):
    """{cos, rel_l1, cos_biased, rel_l1_biased} of fn against fp32 attention."""
    out = {}
    for tag, bias in (("", 0.0), ("_biased", K_BIAS)):
        q, k, v = make_inputs(1, ACC_HEADS, min(n, ACC_MAX_N), d, dtype, bias, seed=1)
        o, ref = fn(q, k, v, causal), exact(q, k, v, causal)
        out["cos" + tag], out["rel_l1" + tag] = cosine(o, ref), rel_l1(o, ref)
        out["finite" + tag] = bool(torch.isfinite(o).all())
    return out


def measure(fn, cfg, b, h, accuracy_too=True):
    import triton

    n, d, causal, dtype = cfg["n"], cfg["d"], cfg["causal"], getattr(torch, cfg["dtype"])
    q, k, v = make_inputs(b, h, n, d, dtype)
    fn(q, k, v, causal)  # compile / autotune outside the timed region
    torch.cuda.synchronize()
    ms = triton.testing.do_bench(lambda: fn(q, k, v, causal), warmup=25, rep=100, return_mode="median")
    flops = 4 * b * h * n * n * d / (2 if causal else 1)
    row = dict(cfg, ms=ms, tops=flops / ms / 1e9)
    if accuracy_too:
        row.update(accuracy(fn, n, d, dtype, causal))
    return row


def sdpa_fn(kind):
    backend = {"sdpa_flash": "FLASH_ATTENTION", "sdpa_cudnn": "CUDNN_ATTENTION"}[kind]
    sdp = getattr(torch.nn.attention.SDPBackend, backend)

    def run(q, k, v, causal):
        with torch.nn.attention.sdpa_kernel(sdp):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return run


PORTABLE = "triton-portable"  # the Triton backend with attention_sm90 (Hopper, Gluon) switched off


def sage_fn(backend):
    from sageattention import sageattn

    if backend != PORTABLE:
        return lambda q, k, v, causal: sageattn(q, k, v, is_causal=causal, backend=backend)
    from sageattention.triton import ops

    def portable(q, k, v, causal):
        saved, ops.USE_SM90_KERNEL = ops.USE_SM90_KERNEL, False
        try:
            return sageattn(q, k, v, is_causal=causal, backend="triton")
        finally:
            ops.USE_SM90_KERNEL = saved

    return portable


def sage_backends(names):
    """Available sageattention backends on this GPU (reference excluded), plus 'auto'."""
    from sageattention.dispatch import BACKENDS, unavailable_reason

    dev = torch.device("cuda", torch.cuda.current_device())
    found, skipped = [], {}
    for name in BACKENDS:
        if name == "reference":
            continue
        reason = unavailable_reason(name, dev)
        (found.append(name) if reason is None else skipped.__setitem__(name, reason))
    found.append("auto")
    if names and PORTABLE in names and "triton" in found:
        found.append(PORTABLE)  # only on request: an A/B of the Triton path's two attention kernels
    return [n for n in found if not names or n in names], skipped


ALIAS = "sageattention_106"


def import_sa106(path: str):
    """sageattention 1.0.6 from `path` (a pip --target folder) under the name ALIAS, beside this repo's package
    (1.0.6 imports its own modules relatively, so the package works under any name)."""
    src = Path(path) / "sageattention"
    if not (src / "core.py").is_file():
        sys.exit(f"{src} does not look like sageattention 1.0.6 (no core.py); pass the pip --target folder")
    link_dir = Path(tempfile.mkdtemp(prefix="sa106-"))
    (link_dir / ALIAS).symlink_to(src.resolve(), target_is_directory=True)
    sys.path.insert(0, str(link_dir))
    return importlib.import_module(ALIAS)


def sa106_fn(path):
    sa106 = import_sa106(path)
    return lambda q, k, v, causal: sa106.sageattn(q, k, v, tensor_layout="HND", is_causal=causal)


def quant_share(args, sizes=(1024, 8192)):
    """Time of the Triton quantization op alone over the whole call (the target is stated at N=8K)."""
    import triton

    from sageattention.config import LOG2E
    from sageattention.triton import ops

    rows, full, quant_qk = [], sage_fn("triton"), ops.calls(direct=True)[0]  # as the eager call launches it
    for n, d in ((n, d) for n in sizes for d in args.d):
        q, k, v = make_inputs(args.batch, args.heads, n, d, torch.float16)
        calls = {
            "quant": lambda q=q, k=k, n=n, d=d: quant_qk(q, k, None, None, n, n, d ** -0.5 * LOG2E, True),
            "call": lambda q=q, k=k, v=v: full(q, k, v, False),
        }
        times = {}
        for name, fn in calls.items():
            fn()
            times[name] = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
        t_q, t_all = times["quant"], times["call"]
        rows.append(dict(n=n, d=d, quant_ms=t_q, call_ms=t_all, share=t_q / t_all))
    return rows


def sweep_tiles(args):
    """TOPS of the Triton kernel for each (BLOCK_M, num_warps, num_stages), to fill sageattention/triton/tiles.py."""
    from sageattention.triton import tiles

    options = [(128, 4, 3), (128, 8, 2), (128, 8, 3), (128, 8, 4), (64, 4, 3)]
    rows = []
    for d in args.d:
        for causal in args.causal:
            for opt in options:
                tiles.OVERRIDE = opt
                try:
                    r = measure(sage_fn("triton"), dict(n=args.sweep_n, d=d, causal=causal, dtype="float16"),
                                args.batch, args.heads, accuracy_too=False)
                    rows.append(dict(r, tiles=list(opt)))
                except Exception as exc:
                    rows.append(dict(d=d, causal=causal, tiles=list(opt), error=str(exc)[:200]))
    tiles.OVERRIDE = None
    return rows


def print_table(rows, backends):
    keyed = {}
    for r in rows:
        keyed.setdefault((r["dtype"], r["d"], r["causal"], r["n"]), {})[r["backend"]] = r
    cols = backends + ["sdpa_flash", "sdpa_cudnn", "sa106"]
    print("TOPS (quantization included); cos = min over randn / biased-K vs fp32; ratio = triton / sa106")
    print(f"{'dtype':8} {'D':>3} {'causal':6} {'N':>6} " + " ".join(f"{c:>10}" for c in cols) + f" {'cos(tri)':>9} {'ratio':>6}")
    for (dtype, d, causal, n), by in sorted(keyed.items()):
        cells = [f"{by[c]['tops']:10.0f}" if c in by and "tops" in by[c] else f"{'-':>10}" for c in cols]
        tri = by.get("triton", {})
        cos = min(tri.get("cos", float("nan")), tri.get("cos_biased", float("nan")))
        ratio = tri.get("tops", float("nan")) / by["sa106"]["tops"] if "tops" in by.get("sa106", {}) else float("nan")
        print(f"{dtype:8} {d:3d} {str(causal):6} {n:6d} " + " ".join(cells) + f" {cos:9.6f} {ratio:6.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+")
    p.add_argument("--d", type=int, nargs="+")
    p.add_argument("--causal", type=lambda s: s.lower() in ("1", "true", "yes"), nargs="+")
    p.add_argument("--dtype", nargs="+", choices=("float16", "bfloat16"))
    p.add_argument("--backends", nargs="+",
                   help="sageattention backends (default: all available + auto; triton-portable: the Triton backend "
                        "without attention_sm90)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="N 1K/4K/16K, fp16 only")
    p.add_argument("--no-sdpa", action="store_true")
    p.add_argument("--sa106", help="folder where sageattention 1.0.6 is installed (pip install --target)")
    p.add_argument("--sweep", action="store_true", help="also sweep the Triton tile settings at --sweep-n")
    p.add_argument("--sweep-n", type=int, default=8192)
    p.add_argument("--out", help="JSON path (default benchmarks/results/<gpu>-<time>.json)")
    args = p.parse_args(argv)
    grid = QUICK if args.quick else FULL
    for key in grid:
        if getattr(args, key) is None:
            setattr(args, key, grid[key])

    cfgs = [dict(n=n, d=d, causal=c, dtype=t) for t in args.dtype for d in args.d for c in args.causal for n in args.n]
    backends, skipped = sage_backends(args.backends)
    runners = {name: sage_fn(name) for name in backends}
    if not args.no_sdpa:
        runners["sdpa_flash"], runners["sdpa_cudnn"] = sdpa_fn("sdpa_flash"), sdpa_fn("sdpa_cudnn")
    if args.sa106:
        runners["sa106"] = sa106_fn(args.sa106)
    rows = []
    t0 = time.time()
    for cfg in cfgs:
        for name, fn in runners.items():
            try:
                rows.append(dict(measure(fn, cfg, args.batch, args.heads), backend=name))
            except Exception as exc:
                rows.append(dict(cfg, backend=name, error=f"{type(exc).__name__}: {exc}"[:200]))
            torch.cuda.empty_cache()
    extra = {}
    if "triton" in backends:
        extra["quant_share"] = quant_share(args)
        if args.sweep:
            extra["tile_sweep"] = sweep_tiles(args)
    gpu = torch.cuda.get_device_name()
    meta = dict(gpu=gpu, torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
                command=" ".join(sys.argv), batch=args.batch, heads=args.heads, seconds=time.time() - t0,
                skipped_backends=skipped)
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        pass
    out = Path(args.out or Path(__file__).parent / "results" / f"{gpu.replace(' ', '_')}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, rows=rows, **extra), indent=1))
    for r in rows:
        if "error" in r:
            print(f"error {r['backend']} {r['dtype']} d{r['d']} causal={r['causal']} n{r['n']}: {r['error']}")
    for r in extra.get("tile_sweep", []):
        print("sweep", r.get("d"), r.get("causal"), r.get("tiles"), f"{r.get('tops', float('nan')):.0f}", r.get("error", ""))
    for r in extra.get("quant_share", []):
        print(f"quantization at N={r['n']} D={r['d']}: {r['quant_ms']:.3f} ms of {r['call_ms']:.3f} ms = {100 * r['share']:.1f}%")
    print(f"{gpu}, torch {torch.__version__}, B={args.batch} H={args.heads}; skipped: {skipped}; JSON: {out}")
    print_table(rows, backends)
    return 0


if __name__ == "__main__":
    sys.exit(main())

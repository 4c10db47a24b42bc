#!/usr/bin/env bash
# One-shot validation of the sm90 kernel on an H100/H200 (python3 with torch + nvcc + compute-sanitizer there):
#   1. builds only sageattention._C_quant and _C_sm90 in place (setup.py's flags, arch 9.0 / 9.0a), ptxas -v kept;
#   1b. selftest: csrc/sm90/selftest (no torch): TMA + wgmma s8 and the P-fragment/V-permutation e4m3 wgmma alone,
#      so a wrong descriptor or layout is told apart from a wrong kernel;
#   2. smoke: serial/ping-pong x one-CTA-per-tile/persistent, each in its own 45 s process (a hang shows up
#      as TIMED OUT for that combination instead of eating the run);
#   3. tests/test_sm90_attention.py (metrics to metrics.json);
#   4. compute-sanitizer memcheck and racecheck on a small causal GQA case of every template instance;
#   5. cuobjdump --dump-sass: GMMA instruction counts, local-memory traffic (LDL/STL) must be zero;
#   6. a bench beside SDPA flash and cuDNN (B=2, H=32, fp16; quantization included, and the kernel alone).
# Logs land under $OUT (default .out/sm90; at most 8 files, what a device call brings back); a short table prints
# last. It writes sageattention/_C_*.so and sageattention/_build_info.py: run it on the device copy, not a shared
# checkout. Stages can be picked so each device call stays inside its 10 minutes on one warm machine (build/ and
# sageattention/*.so stay between calls); all stages in one go take about 10-15 minutes:
#   bash scripts/device_sm90.sh build selftest smoke sass;   bash scripts/device_sm90.sh tests;
#   bash scripts/device_sm90.sh sanitize bench
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.out/sm90}
mkdir -p "$OUT" build
touch "$OUT/summary.txt"
export PYTHONUNBUFFERED=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's package, with the modules built in place
export MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
note() { printf '%-12s %s\n' "$1" "$2" | tee -a "$OUT/summary.txt"; }
STAGES=" ${*:-build selftest smoke tests sanitize sass bench} "
want() { [[ "$STAGES" == *" $1 "* ]]; }

note device "$(nvidia-smi -L 2>&1 | head -1)"
note torch "$($PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())' 2>&1)"

# ---- 1. build -------------------------------------------------------------------------------------------
if want build; then
timeout 400 $PY - >"$OUT/build.log" 2>&1 <<'EOF'
import importlib.util, os, shutil, time
import torch
from torch.utils.cpp_extension import load

spec = importlib.util.spec_from_file_location("sa_setup", "setup.py")
setup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup)  # setup() runs only under __main__
bs = setup.bs
after = setup._fallback_header_dirs()
modules = {}
for ext in setup.EXTENSIONS:
    if ext.short_name not in ("_C_quant", "_C_sm90"):
        modules[ext.short_name] = {"built": False, "reason": "not built by scripts/device_sm90.sh"}
        continue
    archs = ext.archs(bs.parse_arch_list("9.0"))
    t0 = time.time()
    os.makedirs(os.path.join("build", ext.short_name), exist_ok=True)
    module = load(
        name=ext.short_name, sources=setup._sources(ext.folder), extra_include_paths=["csrc"],
        extra_cflags=setup.CXX_FLAGS + [f for d in after for f in ("-idirafter", d)],
        extra_cuda_cflags=setup.NVCC_FLAGS + bs.gencode_flags(archs) + [f"-Xcompiler=-idirafter,{d}" for d in after]
        + (["-Xptxas", "-v"] if ext.short_name == "_C_sm90" else []),
        build_directory=os.path.join("build", ext.short_name), verbose=True, is_python_module=True)
    suffix = module.__file__[module.__file__.index(".", module.__file__.rindex("/")):]
    shutil.copy(module.__file__, f"sageattention/{ext.short_name}{suffix}")
    modules[ext.short_name] = {"built": True, "archs": [str(a) for a in archs]}
    print(f"built {ext.short_name} for {[str(a) for a in archs]} in {time.time() - t0:.0f}s")
info = {"version": "dev", "local_version": None, "cuda_extension": True, "skip_reason": None,
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cxx11_abi": int(torch.compiled_with_cxx11_abi()), "nvcc": "device", "cxx": "c++",
        "arch_list": "9.0 (scripts/device_sm90.sh)", "modules": modules}
open("sageattention/_build_info.py", "w").write(bs.render_build_info(info))
EOF
build_rc=$?
note build "rc=$build_rc"
grep -E "registers|spill|C75[0-9][0-9]" "$OUT/build.log" | sed 's/ in the function.*//; s/ in function.*//' \
  | sort | uniq -c \
  | sed 's/^/  ptxas /' | tee -a "$OUT/summary.txt"
[ $build_rc -eq 0 ] || { tail -40 "$OUT/build.log"; cat "$OUT/summary.txt"; exit 1; }
fi

# ---- 1b. selftest ----------------------------------------------------------------------------------------
if want selftest; then
"$CUDA_HOME/bin/nvcc" -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -Icsrc csrc/sm90/selftest/selftest.cu \
  -o build/sm90_selftest >"$OUT/smoke.log" 2>&1 && timeout 60 build/sm90_selftest >>"$OUT/smoke.log" 2>&1
note selftest "rc=$?"
grep -E "^(qk|pv|selftest)|FAIL|error" "$OUT/smoke.log" | sed 's/^/  /' | tee -a "$OUT/summary.txt"
fi

# ---- 2. smoke: each schedule x grid in its own process, so one that hangs cannot hide the others ---------
if want smoke; then
cat >build/sm90_smoke.py <<'EOF'
import sys
import torch
from sageattention import reference
from sageattention.config import AttentionConfig
from sageattention.ops import quant, sm90
pingpong, persistent = sys.argv[1] == "1", sys.argv[2] == "1"
print("available:", sm90.available(torch.device("cuda")))
for d in (64, 128):
    for causal in (False, True):
        q, k, v = (torch.randn(2, 4, 700, d, device="cuda", dtype=torch.float16) for _ in range(3))
        cfg = AttentionConfig(sm_scale=d ** -0.5, is_causal=causal, pv="fp8", pv_accum_dtype="fp32+fp32",
                              qk_quant_gran="per_thread", return_lse=True, head_dim=d)
        qk = quant.quantize_qk(q, k, cfg, warp_rows=16)
        vt, vs, _ = quant.quant_v_fp8(v, False)
        o = torch.full_like(q, float("nan"))
        lse = torch.full(q.shape[:3], float("nan"), device="cuda")
        sm90.run_kernel(qk, vt, vs, None, quant.qk_scale(cfg), o, lse, causal, 0, "fp32+fp32", pingpong, persistent)
        torch.cuda.synchronize()
        r, _ = reference.attention(q, k, v, cfg, warp_rows=16, key_tile=sm90.KEY_TILE)
        err = float((o.float() - r.float()).abs().sum() / r.float().abs().sum())
        print(f"d={d} causal={causal} pingpong={pingpong} persistent={persistent}: rel-L1 vs reference {err:.2e}",
              f"unwritten/NaN {int(o.isnan().sum())}")
EOF
smoke_rc=0
for combo in "0 0" "1 0" "0 1" "1 1"; do
  timeout 45 $PY build/sm90_smoke.py $combo >>"$OUT/smoke.log" 2>&1
  rc=$?
  [ $rc -eq 124 ] && echo "pingpong/persistent $combo: TIMED OUT (hang)" >>"$OUT/smoke.log"
  [ $rc -ne 0 ] && smoke_rc=$rc
done
note smoke "rc=$smoke_rc"
grep -E "rel-L1|TIMED|Error" "$OUT/smoke.log" | sed 's/^/  /' | tee -a "$OUT/summary.txt"
[ $smoke_rc -eq 0 ] || { tail -30 "$OUT/smoke.log"; cat "$OUT/summary.txt"; exit 1; }
fi

# ---- 3. tests ---------------------------------------------------------------------------------------------
if want tests; then
SAGEATTN_METRICS_OUT="$OUT/metrics.json" timeout 330 $PY -m pytest -q -rs tests/test_sm90_attention.py \
  >"$OUT/tests.log" 2>&1
note tests "rc=$? $(tail -1 "$OUT/tests.log")"
fi

# ---- 4. sanitizer -----------------------------------------------------------------------------------------
if want sanitize; then
cat >build/sm90_sanitize_case.py <<'EOF'
import torch
from sageattention.config import AttentionConfig
from sageattention.ops import sm90
for d in (64, 128):
    for gran in ("per_thread", "per_warp"):
        for accum in ("fp32+fp32", "fp32"):
            q = torch.randn(1, 4, 130, d, device="cuda", dtype=torch.float16)
            k, v = (torch.randn(1, 2, 77, d, device="cuda", dtype=torch.float16) for _ in range(2))
            cfg = AttentionConfig(sm_scale=d ** -0.5, is_causal=True, causal_alignment="bottom_right", pv="fp8",
                                  pv_accum_dtype=accum, qk_quant_gran=gran, smooth_v=True, return_lse=True,
                                  head_dim=d)
            sm90.forward(q, k, v, cfg)
            cfg2 = AttentionConfig(sm_scale=d ** -0.5, pv="fp8", pv_accum_dtype=accum, qk_quant_gran=gran,
                                   head_dim=d)
            sm90.forward(q[:, :, :3], k, v, cfg2)
# more work tiles than SMs, two thirds of them without keys: the persistent grid's claimed-work path (D=64)
for d in (64, 128):
    q = torch.randn(1, 80, 500, d, device="cuda", dtype=torch.float16)
    k, v = (torch.randn(1, 80, 77, d, device="cuda", dtype=torch.float16) for _ in range(2))
    cfg = AttentionConfig(sm_scale=d ** -0.5, is_causal=True, causal_alignment="bottom_right", pv="fp8",
                          pv_accum_dtype="fp32+fp32", qk_quant_gran="per_thread", return_lse=True, head_dim=d)
    sm90.forward(q, k, v, cfg)
torch.cuda.synchronize()
print("case done")
EOF
: >"$OUT/sanitizer.log"
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 \
    $PY build/sm90_sanitize_case.py >>"$OUT/sanitizer.log" 2>&1
  rc=$?
  note "$tool" "rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -1)"
done
fi

# ---- 5. SASS ----------------------------------------------------------------------------------------------
if want sass; then
so=$(ls sageattention/_C_sm90*.so | head -1)
cuobjdump --dump-sass "$so" >build/sm90.sass 2>&1
note sass "$(grep -oE '\b(IGMMA|QGMMA|HGMMA|UTMALDG|USETMAXREG|BAR.SYNC|BAR.ARV|LDL|STL|MUFU.EX2)[A-Z0-9._]*' \
  build/sm90.sass | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
fi

# ---- 6. bench ---------------------------------------------------------------------------------------------
if want bench; then
timeout 240 $PY - >"$OUT/bench.log" 2>&1 <<'EOF'
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench
from sageattention import reference, sageattn
from sageattention.config import AttentionConfig
from sageattention.ops import quant, sm90

dev, B, H = "cuda", 2, 32
print(f"{torch.cuda.get_device_name()}  B={B} H={H} fp16; TOPS = 4*B*H*N^2*D/t (/2 causal)")
print(f"{'D':>4} {'N':>6} {'causal':>6} | {'sm90 full':>9} {'kernel':>7} {'quant ms':>8} | {'flash':>6} {'cudnn':>6}")
for d, n, causal in [(128, 1024, False), (128, 4096, False), (128, 8192, False), (128, 16384, False),
                     (128, 16384, True), (64, 16384, False), (64, 4096, False)]:
    q, k, v = (torch.randn(B, H, n, d, device=dev, dtype=torch.float16) for _ in range(3))
    flops = 4 * B * H * n * n * d / (2 if causal else 1)
    tops = lambda ms: flops / ms / 1e9  # noqa: E731
    cfg = AttentionConfig(sm_scale=d ** -0.5, is_causal=causal, pv="fp8", pv_accum_dtype="fp32+fp32",
                          qk_quant_gran="per_thread", head_dim=d)
    full = do_bench(lambda: sageattn(q, k, v, is_causal=causal, backend="sm90"), warmup=50, rep=300)
    qk = quant.quantize_qk(q, k, cfg, warp_rows=16)
    vt, vs, _ = quant.quant_v_fp8(v, False)
    qt = do_bench(lambda: (quant.quantize_qk(q, k, cfg, warp_rows=16), quant.quant_v_fp8(v, False)), rep=200)
    kern = do_bench(lambda: sm90.attention_op(qk.q8, qk.k8, vt, vs, None, qk.q_scale, qk.k_scale, True,
                                              quant.qk_scale(cfg), causal, 0, "fp32+fp32", q.dtype, False), rep=300)
    res = {}
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                res[name] = tops(do_bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                          warmup=50, rep=300))
        except RuntimeError:
            res[name] = float("nan")
    print(f"{d:>4} {n:>6} {str(causal):>6} | {tops(full):9.0f} {tops(kern):7.0f} {qt:8.3f} | "
          f"{res['flash']:6.0f} {res['cudnn']:6.0f}")
for bias in (0.0, 10.0):
    q, k, v = (torch.randn(1, 8, 2048, 128, device=dev, dtype=torch.float16) for _ in range(3))
    k = k + bias * torch.randn(128, device=dev, dtype=torch.float16)
    o = sageattn(q, k, v, backend="sm90")
    e, _ = reference.exact_attention(q, k, v)
    cos = torch.nn.functional.cosine_similarity(o.double().flatten(), e.double().flatten(), dim=0)
    l1 = (o.double() - e.double()).abs().sum() / e.double().abs().sum()
    print(f"accuracy vs fp32, k_bias={bias}: cos {float(cos):.5f} rel-L1 {float(l1):.4f}")
EOF
note bench "rc=$?"
if [ -f benchmarks/bench_attention.py ]; then  # the shared bench: every backend beside SDPA, quantization included
  PYTHONPATH=. timeout 240 $PY benchmarks/bench_attention.py --quick --backends sm90 triton \
    --out "$OUT/bench_attention.json" >>"$OUT/bench.log" 2>&1
  note bench_attn "rc=$?"
fi
fi
echo
[ -f "$OUT/bench.log" ] && tail -12 "$OUT/bench.log"
echo
cat "$OUT/summary.txt"

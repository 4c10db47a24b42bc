#!/usr/bin/env bash
# One device call that validates the package on a CUDA machine: build the extension for the card, run
# `python -m sageattention info/check`, every GPU test, and the attention benchmark beside SDPA. Full logs go to
# $OUT; a short summary prints last. SKIP_BENCH=1 stops before the benchmark (a full sweep is a device call of its
# own: build/ and the in-place modules stay on a warm machine).
#   OUT=$OUT bash scripts/device_validate.sh [bench args...]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.out/validate}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's package, with the modules built in place
PY=${PYTHON:-python3}
summary="$OUT/summary.txt"
: >"$summary"
note() { printf '%-10s %s\n' "$1" "$2" | tee -a "$summary"; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 )) s"; }

note device "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
note torch "$($PY -c 'import torch, triton; print(torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)' 2>&1)"

arch=$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
MAX_JOBS=${MAX_JOBS:-16} EXT_PARALLEL=${EXT_PARALLEL:-4} TORCH_CUDA_ARCH_LIST=$arch \
  timeout 300 $PY setup.py build_ext --inplace >"$OUT/build.log" 2>&1
note build "rc=$? for arch $arch ($(elapsed))"

{ $PY -m sageattention info; $PY -m sageattention check; } >"$OUT/check.log" 2>&1
note check "rc=$? $(grep -c ' ok$' "$OUT/check.log") ok rows ($(elapsed))"

# -x is deliberately off: one failure must not hide the rest. pytest-timeout bounds a hung kernel.
timeout 220 $PY -m pytest -m gpu -q -p no:cacheprovider --timeout 120 -n ${PYTEST_WORKERS:-8} \
  --ignore=tests/distribution --ignore=tests/build \
  --junitxml="$OUT/pytest.xml" tests >"$OUT/pytest.log" 2>&1
note pytest "rc=$? $(tail -1 "$OUT/pytest.log") ($(elapsed))"

if [ "${SKIP_BENCH:-0}" != 1 ]; then
if [ -d .whl ] && ls .whl/sageattention-1.0.6*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-deps --target /tmp/sa106 .whl/sageattention-1.0.6*.whl >/dev/null 2>&1 && SA106="--sa106 /tmp/sa106"
fi
timeout ${BENCH_TIMEOUT:-400} $PY benchmarks/bench_attention.py ${SA106:-} --out "$OUT/bench.json" "$@" \
  >"$OUT/bench.log" 2>&1
note bench "rc=$? ($(elapsed))"
fi

echo "---- failures ----"
grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20
echo "---- bench ----"
[ -f "$OUT/bench.log" ] && tail -45 "$OUT/bench.log"
echo "---- summary ----"
cat "$summary"

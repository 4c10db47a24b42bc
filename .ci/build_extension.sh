#!/usr/bin/env bash
# Compiles the CUDA extension for one arch on a GPU-less machine, from a clean clone, the way the README says:
# a fresh venv with the CUDA build of torch, `pip install . --no-build-isolation`, then proves the modules
# import (no GPU needed) and that the build record matches what was asked.
#
#   .ci/build_extension.sh                 clone HEAD of this repository and build it
#   .ci/build_extension.sh --worktree      build the working tree as it is (tracked + untracked, not ignored)
#   .ci/build_extension.sh --csrc DIR      replace csrc/ with DIR (to test this script with stand-in sources)
# Settings: ARCH (default 8.0), CUDA_HOME (default /usr/local/cuda), PYTHON (default python3),
# CI_VENV (reuse this venv if it already has the pinned torch), KEEP=1 (keep the work folder),
# EXT_PARALLEL (default 2: modules compile side by side, which also exercises that path) and MAX_JOBS (default 1).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
arch="${ARCH:-8.0}"
torch_pin="torch==2.14.1"
tools=(ninja==1.13.2 setuptools==80.9.0 wheel==0.48.0)
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" EXT_PARALLEL="${EXT_PARALLEL:-2}" MAX_JOBS="${MAX_JOBS:-1}"
from=clone csrc_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --worktree) from=worktree ;;
    --csrc) csrc_dir="$(cd "$2" && pwd)"; shift ;;
    *) echo "usage: $0 [--worktree] [--csrc DIR]" >&2; exit 2 ;;
  esac
  shift
done

start=$(date +%s)
stamp() { echo "== $* ($(( $(date +%s) - start )) s)"; }
work="$(mktemp -d /tmp/sageattn-build.XXXXXX)"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

stamp "source: $from of $repo -> $work/src"
if [ "$from" = clone ]; then
  git clone --quiet --no-hardlinks "$repo" "$work/src"
else
  mkdir "$work/src"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src")
fi
if [ -n "$csrc_dir" ]; then
  rm -rf "$work/src/csrc" && cp -r "$csrc_dir" "$work/src/csrc"
fi

venv="${CI_VENV:-$work/venv}"
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '${torch_pin#torch==}')" 2>/dev/null; then
  stamp "virtual environment $venv ($torch_pin from the local wheel store, ${tools[*]})"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$torch_pin" "${tools[@]}"
fi
py="$venv/bin/python"
"$py" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
"$CUDA_HOME/bin/nvcc" --version | tail -1

stamp "pip install . --no-build-isolation (TORCH_CUDA_ARCH_LIST=$arch, EXT_PARALLEL=$EXT_PARALLEL, MAX_JOBS=$MAX_JOBS)"
(cd "$work/src" && TORCH_CUDA_ARCH_LIST="$arch" "$py" -m pip install -v --no-deps --no-build-isolation . \
  > "$work/build.log" 2>&1) || { tail -60 "$work/build.log"; echo "build failed (log above)"; exit 1; }

stamp "checks: gencodes, import without a GPU, build record"
expected_gencode="-gencode=arch=compute_${arch/./}"
# Every nvcc command must carry exactly one gencode, for ARCH (9.0 may come as the sm90 module's 9.0a).
read -r nvcc_lines wrong < <(awk -v g="$expected_gencode" '/bin\/nvcc .*-c /{n++; if (gsub(/-gencode=/, "&") != 1 || !index($0, g)) bad++}
  END {print n + 0, bad + 0}' "$work/build.log")
echo "nvcc compile commands: $nvcc_lines, with other gencodes than $expected_gencode: $wrong"
[ "$nvcc_lines" -gt 0 ] && [ "$wrong" = 0 ] || { echo "nvcc did not compile exactly for $arch"; exit 1; }
(cd "$work" && SRC="$work/src" ARCH="$arch" "$py" - <<'EOF'
import importlib, importlib.util, os, sys

import torch

from sageattention import _ext

# What should have been built: the clone's own module table applied to ARCH (setup.py's main() does not run).
spec = importlib.util.spec_from_file_location("built_setup", os.path.join(os.environ["SRC"], "setup.py"))
setup = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = setup
spec.loader.exec_module(setup)
requested = setup.bs.parse_arch_list(os.environ["ARCH"])
expected = {m.short_name: [str(a) for a in m.archs(requested)]
            for m in setup.EXTENSIONS if setup._sources(m.folder) and m.archs(requested)}

info = _ext.build_info()
assert info is not None, f"no CUDA build recorded: {_ext.status()}"
assert info["torch"] == torch.__version__, (info["torch"], torch.__version__)
assert info["cxx11_abi"] == int(torch.compiled_with_cxx11_abi())
built = {name: entry["archs"] for name, entry in info["modules"].items() if entry["built"]}
assert built == expected, f"recorded {built}, expected {expected}"
for name in sorted(built):
    module = importlib.import_module(f"sageattention.{name}")  # the raw loader error if it does not load
    print(f"{name}: imports ({os.path.basename(module.__file__)}), built for {built[name]}")
status = _ext.status()
assert all(status[name].startswith("loaded") for name in built), status
print("summary:", _ext.summary())
EOF
)
(cd "$work" && "$py" -m sageattention info | sed -n '1,12p')
stamp "done"

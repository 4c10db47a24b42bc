#!/usr/bin/env bash
# Installs the package into $PREFIX; setup.py reads TORCH_CUDA_ARCH_LIST, MAX_JOBS and EXT_PARALLEL
# (set in recipe.yaml build.script.env).
set -euxo pipefail

torch_version=$("${PYTHON}" -c "import torch; print(torch.__version__.split('+')[0])")
# Local version label, e.g. 2.2.0+cu129torch2.8.0: the wheel repackaged from this package keeps it.
export SAGEATTN_LOCAL_VERSION="${SAGEATTN_CUDA_TAG}torch${torch_version}"

if [[ "${SAGEATTN_CUDA_TAG}" == "cpu" ]]; then
  export SAGEATTN_SKIP_CUDA_BUILD=1
else
  export CUDA_HOME="${CUDA_HOME:-${BUILD_PREFIX}}"
fi

"${PYTHON}" -m pip install . --no-deps --no-build-isolation -vv

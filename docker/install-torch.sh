#!/usr/bin/env bash
# Installs the build environment of one PyPI-torch wheel into the active Python: torch exactly as named by
# SAGEATTN_TORCH_VERSION from SAGEATTN_TORCH_INDEX_URL (download.pytorch.org/whl/cuXYZ), plus pinned build tools.
# Used by cibuildwheel (before-build, before-test) and docker/Dockerfile.
set -euo pipefail
: "${SAGEATTN_TORCH_VERSION:?set SAGEATTN_TORCH_VERSION, e.g. 2.7.0 (scripts/build.py cibuildwheel sets it)}"
: "${SAGEATTN_TORCH_INDEX_URL:?set SAGEATTN_TORCH_INDEX_URL, e.g. https://download.pytorch.org/whl/cu128}"
python -m pip install --no-cache-dir "torch==${SAGEATTN_TORCH_VERSION}" --index-url "${SAGEATTN_TORCH_INDEX_URL}" \
  --extra-index-url https://pypi.org/simple
python -m pip install --no-cache-dir setuptools==80.9.0 wheel==0.48.0 ninja==1.13.2 packaging==25.0
python -c "import torch; print('build torch', torch.__version__, 'CUDA', torch.version.cuda)"

#!/usr/bin/env bash
# Installs the CUDA compiler and runtime headers of SAGEATTN_CUDA_VERSION (e.g. 12.8) from NVIDIA's RHEL 8
# repository into a manylinux_2_28 (AlmaLinux 8) image, at /usr/local/cuda. cibuildwheel's before-all on Linux.
# Library headers that ATen includes (cuBLAS, cuSPARSE, ...) come from torch's nvidia-* wheels (setup.py).
set -euo pipefail
: "${SAGEATTN_CUDA_VERSION:?set SAGEATTN_CUDA_VERSION, e.g. 12.8}"
v="${SAGEATTN_CUDA_VERSION/./-}"
dnf install -y dnf-plugins-core
dnf config-manager --add-repo https://developer.download.nvidia.com/compute/cuda/repos/rhel8/x86_64/cuda-rhel8.repo
dnf install -y "cuda-nvcc-${v}" "cuda-cudart-devel-${v}" "cuda-cccl-${v}" "cuda-nvrtc-devel-${v}"
dnf clean all
ln -sfn "/usr/local/cuda-${SAGEATTN_CUDA_VERSION}" /usr/local/cuda
/usr/local/cuda/bin/nvcc --version | tail -1

// Architecture guards shared by every kernel. Torch-free.
#pragma once

// True while compiling device code for at least compute capability `major.minor` (e.g. 89).
#if defined(__CUDA_ARCH__)
#define SAGE_DEVICE_ARCH __CUDA_ARCH__
#else
#define SAGE_DEVICE_ARCH 0
#endif

// The f16-accumulate e4m3 mma (mma...f16.e4m3.e4m3.f16) first appears in PTX ISA 8.7 (nvcc 12.8).
#if defined(__CUDACC_VER_MAJOR__) && \
    (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 8))
#define SAGE_HAS_FP8_F16_ACCUM 1
#else
#define SAGE_HAS_FP8_F16_ACCUM 0
#endif

// Device code that needs a newer arch than the pass being compiled traps instead of failing to assemble;
// host code never launches it there (the Python side checks the capability first).
#define SAGE_REQUIRE_ARCH(min_arch)                                  \
  do {                                                               \
    if (SAGE_DEVICE_ARCH != 0 && SAGE_DEVICE_ARCH < (min_arch)) __trap(); \
  } while (0)

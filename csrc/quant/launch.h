// Host entry point of the quantization kernels: raw pointers and strides in, CUDA status out. Torch-free, so
// the kernels build and test without the binding layer (ops_quant.cpp is the only torch-facing file).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#ifdef __CUDACC__
#define SAGE_QUANT_HD __host__ __device__
#else
#define SAGE_QUANT_HD
#endif

namespace sage::quant {

enum class DType { kHalf, kBf16 };

// A [B, H, L, D] tensor of 16-bit floats with a contiguous last dim; strides in elements. ptr == nullptr: absent.
struct Strided16 {
  const void* ptr;
  int64_t stride_b, stride_h, stride_l;
  int B, H, L, D;
  DType dtype;
};

// Rows one statistics block reduces: B*H*L/512 blocks fill the GPU at N >= 4K.
constexpr int kStatsRowsPerSplit = 512;
SAGE_QUANT_HD inline int stats_splits(int L) { return L <= 0 ? 1 : (L + kStatsRowsPerSplit - 1) / kStatsRowsPerSplit; }

// Per-channel statistics over the sequence: mean [B, H, D] (zeros unless `center`); with `amax`, the amax of
// (x - mean) when `center` else of x, and scale = amax / amax_divisor.
struct StatsSpec {
  float* work;         // 3 * B * H * stats_splits(L) * D floats
  unsigned* arrivals;  // B * H counters, zero on entry (the caller zeroes them per call)
  float* mean;
  float* amax;   // or null
  float* scale;  // with amax
  float amax_divisor;
  bool center;
};

// INT8 codes [B, H, L, D] (contiguous) and scales [B, H, n_groups] of (x - mean) (mean [B, H, D] or null).
// Groups: blocks of `group_rows` rows; residues 1, 8 (row % 8: Q per_thread) or 4 ((row % 8) / 2: K per_thread).
struct Int8Spec {
  const float* mean;
  int group_rows;
  int residues;
  int8_t* codes;
  float* scales;
};

// FP8 e4m3 V, transposed to [B, H, D, l_pad] (l_pad a multiple of 64, zero past L), keys permuted within each
// group of 16 as the m16n8k32 A fragment of P expects (v16_position in quant_kernels.cuh); mean and amax are
// the statistics of V (a StatsSpec's outputs).
struct Fp8Spec {
  const float* mean;
  const float* amax;
  uint8_t* vt;
  int l_pad;
};

// One call's quantization; a job whose flag is off is skipped. Tensors present share dtype and head dim (64 or
// 128). Launches, in order: Q's INT8 codes (q_int8.group_rows 16 or 32); pass 1: K's and V's statistics; pass 2:
// K's INT8 codes (k_int8.group_rows 64, k_int8.mean from pass 1), V's FP8 codes.
struct QuantJobs {
  Strided16 q, k, v;
  bool do_k_stats, do_v_stats, do_q_int8, do_k_int8, do_v_fp8;
  StatsSpec k_stats, v_stats;
  Int8Spec q_int8, k_int8;
  Fp8Spec v_fp8;
};

cudaError_t run_quant(const QuantJobs& jobs, cudaStream_t stream);

}  // namespace sage::quant

// Host entry points of the quantization kernels: raw pointers and strides in, CUDA status out. Torch-free, so
// the kernels build and test without the binding layer (ops_quant.cpp is the only torch-facing file).
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace sage::quant {

enum class DType { kHalf, kBf16 };

// A [B, H, L, D] tensor of 16-bit floats with a contiguous last dim; strides in elements.
struct Strided16 {
  const void* ptr;
  int64_t stride_b, stride_h, stride_l;
  int B, H, L, D;
  DType dtype;
};

// Number of sequence splits the stats pass uses (size of its fp32 workspace: 3 * B * H * splits * D).
int stats_splits(int L);

// Per-channel statistics over the sequence: mean [B, H, D]; with `amax_out`, the amax of (x - mean) when
// `center` else of x, and `scale_out = amax / amax_divisor`. `work` holds 3 * B * H * stats_splits(L) * D floats.
cudaError_t seq_stats(const Strided16& x, float* work, float* mean_out, float* amax_out, float* scale_out,
                      float amax_divisor, bool center, cudaStream_t stream);

// INT8 codes [B, H, L, D] (contiguous) and scales [B, H, n_groups] of (x - mean) (mean [B, H, D] or null).
// Groups: blocks of `group_rows` rows (16, 32 or 64); residues 1, 8 (row % 8: Q per_thread) or 4
// ((row % 8) / 2: K per_thread).
cudaError_t quant_int8(const Strided16& x, const float* mean, int group_rows, int residues, int8_t* codes,
                       float* scales, cudaStream_t stream);

// FP8 e4m3 V, transposed to [B, H, D, l_pad] (l_pad a multiple of 64, zero past L), keys permuted within each
// group of 16 as the m16n8k32 A fragment of P expects (see kV16Permutation in quant_kernels.cuh).
cudaError_t quant_v_fp8(const Strided16& v, const float* mean, const float* amax, uint8_t* vt, int l_pad,
                        cudaStream_t stream);

}  // namespace sage::quant

// The whole contract between the host and the attention kernels of sm80 and sm89. Torch-free.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace sage::attn {

enum class OutType { kHalf, kBf16 };

// How P·V accumulates (config.PV_ACCUM_DTYPES). Two-level modes sum each 64-key tile in a fresh partial
// accumulator and add it into the fp32 output accumulator.
enum class PvAccum {
  kF32,         // fp16 "fp32" / fp8 "fp32": the mma accumulates into the fp32 output directly
  kF16ThenF32,  // fp16 "fp16+fp32": fp16 partial per tile
  kF16,         // fp16 "fp16": the output accumulator itself is fp16
  kF32ThenF32,  // fp8 "fp32+fp32": fp32 partial per tile
  kF8F16ThenF32 // fp8 "fp32+fp16": fp16 partial per tile (f16-accumulate e4m3 mma)
};

struct AttentionParams {
  const int8_t* q;   // [B, Hq, Lq, D] contiguous INT8 codes
  const int8_t* k;   // [B, Hkv, Lk, D] contiguous INT8 codes
  const void* v;     // fp16/bf16 V [B, Hkv, Lk, D] (strided), or e4m3 V^T [B, Hkv, D, v_len_padded]
  void* o;           // [B, Hq, Lq, D] contiguous, OutType
  float* lse;        // [B, Hq, Lq] base-e LSE without the smoothing correction, or null
  const float* q_scale;  // [B, Hq, n_q_groups]
  const float* k_scale;  // [B, Hkv, n_k_groups]
  const float* v_scale;  // fp8: [B, Hkv, D]
  const float* v_mean;   // fp8 with smooth_v: [B, Hkv, D], else null
  int64_t v_stride_b, v_stride_h, v_stride_l;  // fp16 V, elements
  int B, Hq, Hkv, Lq, Lk, v_len_padded;
  int q_group_rows, q_residues, k_residues;  // quant/spec.py groupings (residues 1 = per_warp)
  int n_q_groups, n_k_groups;
  float qk_scale;     // sm_scale * log2(e), folded into Q's scale
  float p_scale;      // fp8: P is multiplied by this before rounding to e4m3
  int causal;         // 0 / 1
  int causal_offset;  // query i sees key j iff j <= i + causal_offset
};

}  // namespace sage::attn

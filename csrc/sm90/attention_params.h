// The contract between the torch binding (ops_sm90.cpp) and the sm90 attention launcher. Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "common/sm90/tma_host.h"

namespace sageattn::sm90 {

// What the kernel reads besides its tensor maps. Scales are fp32 and contiguous:
// q_scale [B, Hq, q_groups], k_scale [B, Hkv, k_groups], v_scale and v_mean [B, Hkv, D].
struct AttentionArgs {
  const float* q_scale;
  const float* k_scale;
  const float* v_scale;
  const float* v_mean;  // smooth_v: added to every row that saw a key; nullptr otherwise
  float qk_scale;       // sm_scale * log2(e): logits come out in base 2
  void* out;   // fp16 or bf16 [B, Hq, Lq, D] with the strides below (elements), D contiguous
  float* lse;  // natural-log LSE [B, Hq, Lq] contiguous, or nullptr (no K-smoothing correction: the caller adds it)
  int64_t out_stride_b, out_stride_h, out_stride_l;
  int batch, heads_q, heads_kv, len_q, len_k;
  int q_groups, k_groups;
  int causal, causal_offset;  // query i sees key j iff j <= i + causal_offset
  int out_bf16;
  int* work_counter;  // one int32 of scratch: persistent grids that claim work tiles count them here
};

// One call. The quantized operands are byte tensors seen as 4-D, innermost first:
// q int8 (D, Lq, Hq, B); k int8 (D, Lk, Hkv, B); vt e4m3 (Lk padded to 64, D, Hkv, B) with keys permuted
// inside each group of 16 as ops/sm90.py documents (V_KEY_ORDER).
struct AttentionProblem {
  ByteTensor4d q, k, vt;
  AttentionArgs args;
  int head_dim = 0;        // 64 or 128
  bool per_thread = true;  // per_thread (8 Q / 4 K scales per group) or per_warp (1 / 1) scales, warp_rows 16
  bool two_level = true;   // "fp32+fp32": each tile's P·V partial in its own accumulator, added in fp32
  bool pingpong = true;    // consumer warpgroups alternate on the tensor cores (false: each runs tile by tile)
  bool persistent = true;  // one CTA per SM striding over the work tiles (false: one CTA per work tile)
};

// Launches on `stream`; returns an empty string or the reason it could not launch.
std::string attention_forward(const AttentionProblem& problem, cudaStream_t stream);

}  // namespace sageattn::sm90

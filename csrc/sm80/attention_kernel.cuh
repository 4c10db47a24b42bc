// The attention mainloop shared by the sm80 (FP16 P·V) and sm89 (FP8 P·V) kernels. Torch-free.
//
// One CTA: 16 queries per warp (kWarps warps) of one (batch, head). Per 64-key tile: S = Q8·K8ᵀ with the
// m16n8k32 s8 mma, dequantized by the per-row Q scale and per-column K scale (quant/spec.py groupings), an
// online base-2 softmax in registers, then P·V through the `Value` policy (value_fp16.cuh, sm89/value_fp8.cuh),
// which owns V's shared-memory tile, its mma and the output accumulator. K and V tiles are double-buffered
// with cp.async: tile j+1 is in flight while tile j is computed.
#pragma once
#include <cstdint>

#include "common/cp_async.cuh"
#include "common/mma.cuh"
#include "common/numeric.cuh"
#include "common/swizzle.cuh"
#include "sm80/params.h"

namespace sage::attn {

// Warps (16 queries each) per CTA; a launcher may define it before including this header. Measured on H100
// (benchmarks/NOTES.md): FP16 P·V is ~3% faster with 8 warps (one 128-query CTA per SM), FP8 P·V ~8% faster with
// 4 (two 64-query CTAs per SM overlap each other's barriers and loads).
#ifndef SAGE_ATTN_WARPS
#define SAGE_ATTN_WARPS 8
#endif
constexpr int kWarps = SAGE_ATTN_WARPS;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockQ = kWarps * 16;
constexpr int kBlockK = 64;

// Copies ROWS rows of CHUNKS 16-byte chunks from global (row stride in bytes) into a swizzled shared tile;
// rows >= valid are zero-filled so padding can never inject NaN into an mma.
template <int ROWS, int CHUNKS>
__device__ __forceinline__ void load_tile(uint32_t smem, const void* src, int64_t row_stride, int valid) {
  static_assert((ROWS * CHUNKS) % kThreads == 0, "tile must split evenly over the CTA");
#pragma unroll
  for (int it = 0; it < ROWS * CHUNKS / kThreads; ++it) {
    const int i = it * kThreads + threadIdx.x, row = i / CHUNKS, chunk = i % CHUNKS;
    const bool ok = row < valid;
    const char* g = static_cast<const char*>(src) + (ok ? row : 0) * row_stride + chunk * 16;
    cp_async_16(smem + swizzled_offset<CHUNKS>(row, chunk), g, ok);
  }
}

template <int D, class Value>
constexpr int smem_bytes() {
  return kBlockQ * D + 2 * kBlockK * D + 2 * Value::kTileBytes;
}

template <int D, typename OutT, class Value>
__global__ void __launch_bounds__(kThreads) attention_kernel(const __grid_constant__ AttentionParams p) {
  constexpr int kChunks = D / 16;  // 16-byte chunks per INT8 row of Q or K
  constexpr int kKTileBytes = kBlockK * D;
  extern __shared__ __align__(128) uint8_t smem[];
  const uint32_t s_q = smem_addr(smem), s_k = s_q + kBlockQ * D, s_v = s_k + 2 * kKTileBytes;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
  const int q_tile = p.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;  // longest causal rows first
  const int hq = blockIdx.y, b = blockIdx.z, hkv = hq / (p.Hq / p.Hkv);
  const int q0 = q_tile * kBlockQ;
  int key_end = p.Lk;  // keys past the last row's causal limit form fully masked tiles: never visited
  if (p.causal) key_end = min(key_end, min(q0 + kBlockQ, p.Lq) + p.causal_offset);
  const int n_tiles = key_end > 0 ? (key_end + kBlockK - 1) / kBlockK : 0;

  const int8_t* q_g = p.q + ((int64_t(b) * p.Hq + hq) * p.Lq + q0) * D;
  const int8_t* k_g = p.k + (int64_t(b) * p.Hkv + hkv) * p.Lk * D;
  load_tile<kBlockQ, kChunks>(s_q, q_g, D, p.Lq - q0);
  if (n_tiles > 0) load_tile<kBlockK, kChunks>(s_k, k_g, D, min(kBlockK, p.Lk));
  cp_async_commit();
  if (n_tiles > 0) Value::load(s_v, p, b, hkv, 0);
  cp_async_commit();

  // This lane's rows are r0 and r0 + 8; their Q scales carry sm_scale * log2(e).
  const int r0 = q0 + warp * 16 + lane / 4, r1 = r0 + 8;
  const float* q_scale = p.q_scale + (int64_t(b) * p.Hq + hq) * p.n_q_groups;
  const auto q_scale_of = [&](int r) {
    const int g = (r / p.q_group_rows) * p.q_residues + (p.q_residues > 1 ? r % 8 : 0);
    return r < p.Lq ? q_scale[g] * p.qk_scale : 0.f;
  };
  const float qs0 = q_scale_of(r0), qs1 = q_scale_of(r1);
  const float* k_scale = p.k_scale + (int64_t(b) * p.Hkv + hkv) * p.n_k_groups + (p.k_residues > 1 ? t : 0);

  cp_async_wait<1>();
  __syncthreads();
  uint32_t qf[D / 32][4];
#pragma unroll
  for (int kc = 0; kc < D / 32; ++kc) {
    ldmatrix_x4(qf[kc], s_q + swizzled_offset<kChunks>(warp * 16 + lane % 16, 2 * kc + lane / 16));
  }

  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  Value acc;
  acc.zero();
  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    if (j > 0) {
      cp_async_wait<1>();  // K_j has landed (V_j may still be in flight)
      __syncthreads();     // ... for every thread; and tile j-1's buffers are free
    }
    const int next = j + 1, next_rows = min(kBlockK, p.Lk - next * kBlockK);
    if (next < n_tiles) load_tile<kBlockK, kChunks>(s_k + (stage ^ 1) * kKTileBytes, k_g + int64_t(next) * kBlockK * D, D, next_rows);
    cp_async_commit();
    if (next < n_tiles) Value::load(s_v + (stage ^ 1) * Value::kTileBytes, p, b, hkv, next);
    cp_async_commit();

    int32_t si[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) si[n][0] = si[n][1] = si[n][2] = si[n][3] = 0;
    const uint32_t s_kj = s_k + stage * kKTileBytes;
#pragma unroll
    for (int kc = 0; kc < D / 32; ++kc) {
#pragma unroll
      for (int n = 0; n < 8; n += 2) {
        uint32_t kb[4];
        ldmatrix_x4(kb, s_kj + swizzled_offset<kChunks>(8 * n + lane % 8 + 8 * (lane / 16), 2 * kc + (lane / 8) % 2));
        mma_s8_m16n8k32(si[n], qf[kc], kb[0], kb[1]);
        mma_s8_m16n8k32(si[n + 1], qf[kc], kb[2], kb[3]);
      }
    }

    const float ks = k_scale[j * p.k_residues];
    const float f0 = qs0 * ks, f1 = qs1 * ks;
    float s[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[n][i] = float(si[n][i]) * (i < 2 ? f0 : f1);
    }
    const int key0 = j * kBlockK;
    if (key0 + kBlockK > p.Lk || (p.causal && key0 + kBlockK - 1 > q0 + warp * 16 + p.causal_offset)) {
#pragma unroll
      for (int n = 0; n < 8; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int key = key0 + 8 * n + 2 * t + (i & 1), row = i < 2 ? r0 : r1;
          if (key >= p.Lk || (p.causal && key > row + p.causal_offset)) s[n][i] = -INFINITY;
        }
      }
    }

    float mx0 = m0, mx1 = m1;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
      mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
    }
    mx0 = group_max<4>(mx0);
    mx1 = group_max<4>(mx1);
    const float base0 = mx0 == -INFINITY ? 0.f : mx0, base1 = mx1 == -INFINITY ? 0.f : mx1;  // no key seen yet
    const float alpha0 = fast_exp2(m0 - base0), alpha1 = fast_exp2(m1 - base1);
    m0 = mx0;
    m1 = mx1;
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      s[n][0] = fast_exp2(s[n][0] - base0), s[n][1] = fast_exp2(s[n][1] - base0);
      s[n][2] = fast_exp2(s[n][2] - base1), s[n][3] = fast_exp2(s[n][3] - base1);
      sum0 += s[n][0] + s[n][1];
      sum1 += s[n][2] + s[n][3];
    }
    l0 = l0 * alpha0 + sum0;  // per-lane partial row sums; the quad is summed once at the end
    l1 = l1 * alpha1 + sum1;
    acc.rescale(alpha0, alpha1);

    cp_async_wait<2>();  // V_j has landed (tile j+1 may still be in flight)
    __syncthreads();
    acc.accumulate(s, s_v + stage * Value::kTileBytes, lane, p);
  }

  l0 = group_sum<4>(l0);
  l1 = group_sum<4>(l1);
  float out[D / 8][4];
  acc.to_float(out);
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) out[dn][0] *= inv0, out[dn][1] *= inv0, out[dn][2] *= inv1, out[dn][3] *= inv1;
  Value::finish(out, p, b, hkv, t, l0 > 0.f, l1 > 0.f);

  OutT* o = static_cast<OutT*>(p.o) + (int64_t(b) * p.Hq + hq) * p.Lq * D;
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) {
    const int col = 8 * dn + 2 * t;
    if (r0 < p.Lq) *reinterpret_cast<uint32_t*>(o + int64_t(r0) * D + col) = Vec16<OutT>::pack(out[dn][0], out[dn][1]);
    if (r1 < p.Lq) *reinterpret_cast<uint32_t*>(o + int64_t(r1) * D + col) = Vec16<OutT>::pack(out[dn][2], out[dn][3]);
  }
  if (p.lse != nullptr && t == 0) {
    constexpr float kLn2 = 0.6931471805599453f;
    float* lse = p.lse + (int64_t(b) * p.Hq + hq) * p.Lq;
    if (r0 < p.Lq) lse[r0] = l0 > 0.f ? (m0 + __log2f(l0)) * kLn2 : -INFINITY;
    if (r1 < p.Lq) lse[r1] = l1 > 0.f ? (m1 + __log2f(l1)) * kLn2 : -INFINITY;
  }
}

}  // namespace sage::attn

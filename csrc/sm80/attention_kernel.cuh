// The attention mainloop shared by the sm80 (FP16 P·V) and sm89 (FP8 P·V) kernels. Torch-free.
//
// One CTA: 16 queries per warp (kWarps warps) of one (batch, head). Per 64-key tile: S = Q8·K8ᵀ with the
// m16n8k32 s8 mma, an online base-2 softmax in registers, then P·V through the `Value` policy (value_fp16.cuh,
// sm89/value_fp8.cuh), which owns V's shared-memory tile, its mma and the output accumulator.
//
// Schedule (benchmarks/NOTES.md, "mma.sync v1"): K and V are double-buffered with cp.async and one barrier per
// tile; each warp issues Q·Kᵀ of tile j+1 before the softmax of tile j, so the tensor pipe has independent work
// while the softmax runs. Scores never pass through I2F: the s32 accumulator starts at the bit pattern of
// 1.5·2^23, so its float view is 1.5·2^23 + score exactly (|score| < 2^21 for D <= 128), and the row max and the
// exponent argument are taken on that view (see `step` in attention_kernel).
#pragma once
#include <cfloat>
#include <cstdint>

#include "common/cp_async.cuh"
#include "common/mma.cuh"
#include "common/numeric.cuh"
#include "common/swizzle.cuh"
#include "sm80/params.h"

namespace sage::attn {

// CTA shape (benchmarks/NOTES.md, "mma.sync v1"): 4 warps of 16 queries; at D=64 registers are capped so that
// three CTAs share an SM, at D=128 two do. Independent CTAs overlap each other's barriers, loads and softmax: on
// the H200 this beat one 8-warp CTA per SM by 26-33% at D=64 and 2-9% at D=128 (16K non-causal: -3%).
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockQ = kWarps * 16;
template <int D>
constexpr int kMinBlocksPerSm = D == 64 ? 3 : 2;
constexpr int kBlockK = 64;

// Bits of the float 1.5·2^23 as an s32 mma accumulator's starting value (see the header comment).
constexpr int32_t kScoreBiasBits = 0x4B400000;
constexpr float kScoreBias = 12582912.f;

// This thread's share of copying a ROWS x CHUNKS (16-byte chunks) tile from global memory into a swizzled shared
// tile: rows threadIdx / CHUNKS + pass * kRowsPerPass, chunk threadIdx % CHUNKS. Passes are 8-row aligned, so they
// share the swizzle and differ by a constant offset.
template <int ROWS, int CHUNKS>
struct TileCopy {
  static constexpr int kRowsPerPass = kThreads / CHUNKS;
  static constexpr int kPasses = ROWS / kRowsPerPass;
  static_assert(kThreads % CHUNKS == 0 && ROWS % kRowsPerPass == 0 && kRowsPerPass % 8 == 0, "tile must split evenly");
  static constexpr uint32_t kPassBytes = kRowsPerPass * CHUNKS * 16;

  // Every row of the tile exists in global memory.
  static __device__ __forceinline__ void full(uint32_t smem, const void* tile, int64_t row_stride) {
    const int row = threadIdx.x / CHUNKS, chunk = threadIdx.x % CHUNKS;
    const char* g = static_cast<const char*>(tile) + row * row_stride + chunk * 16;
    const uint32_t s = smem + swizzled_offset<CHUNKS>(row, chunk);
#pragma unroll
    for (int it = 0; it < kPasses; ++it) cp_async_16(s + it * kPassBytes, g + it * kRowsPerPass * row_stride, true);
  }

  // Rows >= valid are zero-filled (never read), so padding can never inject NaN into an mma.
  static __device__ __forceinline__ void rows(uint32_t smem, const void* tile, int64_t row_stride, int valid) {
    const int row = threadIdx.x / CHUNKS, chunk = threadIdx.x % CHUNKS;
    const uint32_t s = smem + swizzled_offset<CHUNKS>(row, chunk);
#pragma unroll
    for (int it = 0; it < kPasses; ++it) {
      const int r = row + it * kRowsPerPass;
      const bool ok = r < valid;
      cp_async_16(s + it * kPassBytes, static_cast<const char*>(tile) + (ok ? r : 0) * row_stride + chunk * 16, ok);
    }
  }

  static __device__ __forceinline__ void any(uint32_t smem, const void* tile, int64_t row_stride, int valid) {
    if (valid >= ROWS) full(smem, tile, row_stride);
    else rows(smem, tile, row_stride, valid);
  }
};

// Two K stages, then two V stages. Q passes through V's second stage: it is read into registers before the first
// tile's barrier, and V_1 is copied there only after it.
template <int D, class Value>
constexpr int smem_bytes() {
  static_assert(kBlockQ * D <= Value::kTileBytes, "Q must fit in one V stage");
  return 2 * kBlockK * D + 2 * Value::kTileBytes;
}

// S = Q·K_tileᵀ for one warp's 16 rows, as biased float views (accumulators start at kScoreBiasBits).
template <int D>
__device__ __forceinline__ void qk_tile(float (&acc)[8][4], const uint32_t (&qf)[D / 32][4], uint32_t s_kj,
                                        const uint32_t (&k_lane)[D / 32]) {
  constexpr uint32_t kRow8Bytes = 8 * (D / 16) * 16;  // eight INT8 K rows
#pragma unroll
  for (int kc = 0; kc < D / 32; ++kc) {
#pragma unroll
    for (int n = 0; n < 8; n += 2) {
      uint32_t kb[4];
      ldmatrix_x4(kb, s_kj + k_lane[kc] + n * kRow8Bytes);
      if (kc == 0) {
        mma_s8_m16n8k32_biased_init(acc[n], qf[0], kb[0], kb[1], kScoreBiasBits);
        mma_s8_m16n8k32_biased_init(acc[n + 1], qf[0], kb[2], kb[3], kScoreBiasBits);
      } else {
        mma_s8_m16n8k32_biased(acc[n], qf[kc], kb[0], kb[1]);
        mma_s8_m16n8k32_biased(acc[n + 1], qf[kc], kb[2], kb[3]);
      }
    }
  }
}

template <int D, typename OutT, class Value>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm<D>) attention_kernel(const __grid_constant__ AttentionParams p) {
  constexpr int kChunks = D / 16;  // 16-byte chunks per INT8 row of Q or K
  constexpr int kKTileBytes = kBlockK * D;
  static_assert(D <= 128, "scores must stay below 2^21 in magnitude for the biased float view");
  using KCopy = TileCopy<kBlockK, kChunks>;
  extern __shared__ __align__(128) uint8_t smem[];
  const uint32_t s_k = smem_addr(smem), s_v = s_k + 2 * kKTileBytes, s_q = s_v + Value::kTileBytes;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
  const int q_tile = p.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;  // longest causal rows first
  const int hq = blockIdx.y, b = blockIdx.z, hkv = hq / (p.Hq / p.Hkv);
  const int q0 = q_tile * kBlockQ;
  int key_end = p.Lk;  // keys past the last row's causal limit form fully masked tiles: never visited
  if (p.causal) key_end = min(key_end, min(q0 + kBlockQ, p.Lq) + p.causal_offset);
  const int n_tiles = key_end > 0 ? (key_end + kBlockK - 1) / kBlockK : 0;

  const int8_t* q_g = p.q + ((int64_t(b) * p.Hq + hq) * p.Lq + q0) * D;
  const int8_t* k_g = p.k + (int64_t(b) * p.Hkv + hkv) * p.Lk * D;
  const auto load_k = [&](int tile) {
    KCopy::any(s_k + (tile & 1) * kKTileBytes, k_g + int64_t(tile) * kBlockK * D, D, p.Lk - tile * kBlockK);
  };
  TileCopy<kBlockQ, kChunks>::rows(s_q, q_g, D, p.Lq - q0);
  if (n_tiles > 0) load_k(0);
  cp_async_commit();
  if (n_tiles > 0) Value::load(s_v, p, b, hkv, 0);
  if (n_tiles > 1) load_k(1);
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

  // Lane parts of the ldmatrix addresses: K rows 8n + lane % 8 + 8 (lane / 16), chunk 2kc + (lane / 8) % 2; rows
  // 8n apart share the swizzle, so n only adds an immediate.
  uint32_t k_lane[D / 32];
#pragma unroll
  for (int kc = 0; kc < D / 32; ++kc) k_lane[kc] = swizzled_offset<kChunks>(lane % 8 + 8 * (lane / 16), 2 * kc + (lane / 8) % 2);
  Value acc;
  acc.init(lane);

  cp_async_wait<1>();  // Q and K_0
  __syncthreads();
  uint32_t qf[D / 32][4];
#pragma unroll
  for (int kc = 0; kc < D / 32; ++kc) {
    ldmatrix_x4(qf[kc], s_q + swizzled_offset<kChunks>(warp * 16 + lane % 16, 2 * kc + lane / 16));
  }

  // Running row max (scaled, base 2; may trail the true max by Value::kMaxLog2Growth) and per-lane partial sums.
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const float log2_p_scale = Value::log2_p_scale(p);
  const int row_limit = q0 + warp * 16 + p.causal_offset;  // the warp's first row sees keys <= this

  // Tile j: `x` holds its scores (1.5·2^23 + score) and becomes P; `next` receives tile j+1's.
  const auto step = [&](int j, auto& x, auto& next) {
    cp_async_wait<0>();  // V_j and K_{j+1}
    __syncthreads();     // ... for every thread; and every warp is done with K_j and V_{j-1}
    if (j + 2 < n_tiles) load_k(j + 2);
    if (j + 1 < n_tiles) Value::load(s_v + ((j + 1) & 1) * Value::kTileBytes, p, b, hkv, j + 1);
    cp_async_commit();

    const int key0 = j * kBlockK;
    if (key0 + kBlockK > p.Lk || (p.causal && key0 + kBlockK - 1 > row_limit)) {
#pragma unroll
      for (int n = 0; n < 8; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int key = key0 + 8 * n + 2 * t + (i & 1), row = i < 2 ? r0 : r1;
          if (key >= p.Lk || (p.causal && key > row + p.causal_offset)) x[n][i] = -INFINITY;
        }
      }
    }
    // Unconditional, so the mma issue interleaves with the softmax below; after the last tile it reads a stale
    // stage (no copy is in flight then) and the result is dropped.
    qk_tile<D>(next, qf, s_k + ((j + 1) & 1) * kKTileBytes, k_lane);

    // Scores of this thread's columns share one scale per row, f = q_scale * k_scale (> 0, so masked -inf stays
    // -inf; the lanes of a row may differ in k_scale). The thread's max starts at 0, below every biased score: a
    // thread whose columns are all masked keeps 0 and offers -inf to the row max.
    const float ks = k_scale[j * p.k_residues];
    const float f0 = fmaxf(qs0 * ks, FLT_MIN), f1 = fmaxf(qs1 * ks, FLT_MIN);
    float mx0 = 0.f, mx1 = 0.f;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      mx0 = fmaxf(mx0, fmaxf(x[n][0], x[n][1]));
      mx1 = fmaxf(mx1, fmaxf(x[n][2], x[n][3]));
    }
    const float t0 = (mx0 - kScoreBias) * f0, t1 = (mx1 - kScoreBias) * f1;  // this thread's scaled maxima
    const float tile0 = group_max<4>(mx0 > 0.f ? t0 : -INFINITY), tile1 = group_max<4>(mx1 > 0.f ? t1 : -INFINITY);
    // Rescale only when some row's max grew past the allowance; otherwise P may reach 2^kMaxLog2Growth. A row with
    // no key yet keeps m = -inf (its accumulators are still 0).
    if (__any_sync(0xffffffffu, tile0 > m0 + Value::kMaxLog2Growth || tile1 > m1 + Value::kMaxLog2Growth)) {
      const float n0 = fmaxf(m0, tile0), n1 = fmaxf(m1, tile1);
      const float alpha0 = fast_exp2(m0 - (n0 == -INFINITY ? 0.f : n0));  // 0 on a row's first keys
      const float alpha1 = fast_exp2(m1 - (n1 == -INFINITY ? 0.f : n1));
      m0 = n0, m1 = n1;
      l0 *= alpha0, l1 *= alpha1;
      acc.rescale(alpha0, alpha1);
    }
    // exp2(score * f - m) = exp2((x - mx) * f + (t - m)): x - mx is exact, so no precision is lost to the bias.
    // Masked scores give exp2(-inf) = 0 (d stays finite while m is still -inf).
    const float d0 = t0 - (m0 == -INFINITY ? 0.f : m0) + log2_p_scale;
    const float d1 = t1 - (m1 == -INFINITY ? 0.f : m1) + log2_p_scale;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      x[n][0] = fast_exp2(fmaf(x[n][0] - mx0, f0, d0)), x[n][1] = fast_exp2(fmaf(x[n][1] - mx0, f0, d0));
      x[n][2] = fast_exp2(fmaf(x[n][2] - mx1, f1, d1)), x[n][3] = fast_exp2(fmaf(x[n][3] - mx1, f1, d1));
    }
    if constexpr (!Value::kTensorRowSums) {
      float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
      for (int n = 0; n < 8; ++n) sum0 += x[n][0] + x[n][1], sum1 += x[n][2] + x[n][3];
      l0 += sum0;  // per-lane partial row sums (of P * p_scale); the quad is summed once at the end
      l1 += sum1;
    }
    acc.accumulate(x, s_v + (j & 1) * Value::kTileBytes, p);
  };

  float sa[8][4], sb[8][4];
  if (n_tiles > 0) qk_tile<D>(sa, qf, s_k, k_lane);
  for (int j = 0; j < n_tiles; j += 2) {  // two steps per trip, so the score arrays swap roles without copies
    step(j, sa, sb);
    if (j + 1 < n_tiles) step(j + 1, sb, sa);
  }

  if constexpr (Value::kTensorRowSums) {
    l0 = acc.row_sum(0), l1 = acc.row_sum(1);
  } else {
    l0 = group_sum<4>(l0), l1 = group_sum<4>(l1);
  }
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
    if (r0 < p.Lq) lse[r0] = l0 > 0.f ? (m0 + __log2f(l0) - log2_p_scale) * kLn2 : -INFINITY;
    if (r1 < p.Lq) lse[r1] = l1 > 0.f ? (m1 + __log2f(l1) - log2_p_scale) * kLn2 : -INFINITY;
  }
}

}  // namespace sage::attn

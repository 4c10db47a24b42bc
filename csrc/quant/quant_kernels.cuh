// Quantization kernels. Torch-free. A call's quantization is three launches (launch.cu run_quant):
//   quant_q: Q's INT8 codes (needs no statistics);
//   pass 1:  per-channel statistics of K and V over the sequence;
//   pass 2:  K's INT8 codes (needs K's mean) and V's FP8 codes (needs V's mean and amax).
// Passes 1 and 2 are grids whose blocks take roles by their index, so a call costs three launch latencies and
// tails instead of one per step (seven before, two of them for one-warp finish kernels). The statistics are
// finished by the last block of each head to arrive (a counter per head), not by a launch of their own.
// A block owns whole scale groups, so a group amax never leaves shared memory; threads read 16 bytes (8
// channels) of one row per access.
#pragma once
#include <cstdint>

#include "common/numeric.cuh"
#include "quant/launch.h"

namespace sage::quant {

constexpr int kThreads = 128;
constexpr int kKRows = 64;               // rows of a pass-2 INT8 block (K's scale group, quant/spec.py)

// Position, inside its group of 16, that key `k` (0..15) takes in quantized V^T. The QK accumulator gives lane
// t (= lane % 4) keys {2t, 2t+1, 8+2t, 9+2t} of each 16; the e4m3 A fragment wants k = 4t..4t+3 there.
__device__ __forceinline__ int v16_position(int k) { return 4 * ((k & 7) >> 1) + 2 * (k >> 3) + (k & 1); }

template <typename T, int D>
struct RowSlice {  // which 8 channels of which row a thread handles in one pass
  static constexpr int kThreadsPerRow = D / 8;
  static constexpr int kRowsPerPass = kThreads / kThreadsPerRow;
  int col, sub;
  __device__ RowSlice() : col((threadIdx.x % kThreadsPerRow) * 8), sub(threadIdx.x / kThreadsPerRow) {}
};

// Block `i` of a role that gives each (b, h) `per_head` blocks, block index fastest (neighbouring blocks read
// neighbouring rows of one head).
struct HeadBlock {
  int blk, h, b;
  __device__ HeadBlock(int64_t i, int per_head, int H)
      : blk(int(i % per_head)), h(int((i / per_head) % H)), b(int(i / per_head / H)) {}
};

template <typename T>
__device__ __forceinline__ const T* head_base(const Strided16& x, const HeadBlock& hb) {
  return static_cast<const T*>(x.ptr) + hb.b * x.stride_b + hb.h * x.stride_h;
}

// One channel's statistics from its splits (summed in split order, so the result does not depend on which
// block finishes). amax of (x - mean) = max(max - mean, mean - min) exactly, since fp32 subtraction is monotone.
// __ldcg: the other blocks' partials are read from L2, never from a line this SM's L1 might hold.
__device__ __forceinline__ void finish_channel(const StatsSpec& st, int splits, int L, int D, int64_t n_bh,
                                               int64_t bh, int c) {
  const int64_t plane = n_bh * splits * D, i = bh * D + c;
  float a = 0.f, m = -INFINITY, n = INFINITY;
#pragma unroll 8  // independent loads in flight: a rolled loop waits one memory latency per split
  for (int s = 0; s < splits; ++s) {
    const int64_t o = (bh * splits + s) * D + c;
    a += __ldcg(st.work + o), m = fmaxf(m, __ldcg(st.work + plane + o)), n = fminf(n, __ldcg(st.work + 2 * plane + o));
  }
  const float mean = L > 0 ? __fdiv_rn(a, float(L)) : 0.f;  // IEEE division even under --use_fast_math
  st.mean[i] = st.center ? mean : 0.f;
  if (st.amax) {
    const float c0 = st.center ? mean : 0.f;
    const float amax = L > 0 ? fmaxf(m - c0, c0 - n) : 0.f;
    st.amax[i] = amax;
    st.scale[i] = amax * __frcp_rn(st.amax_divisor);  // torch divides by a scalar this way
  }
}

// Stats role: partial sum / max / min per channel over kStatsRowsPerSplit rows into st.work[3][B*H][splits][D];
// the head's last block to finish its partial combines all of them (finish_channel).
template <typename T, int D>
__device__ __forceinline__ void stats_block(const Strided16& x, const StatsSpec& st, const HeadBlock& hb) {
  using S = RowSlice<T, D>;
  const S s;
  const int splits = stats_splits(x.L);
  const T* base = head_base<T>(x, hb) + s.col;
  float sum[8], mx[8], mn[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) sum[i] = 0.f, mx[i] = -INFINITY, mn[i] = INFINITY;
  const int r_end = min(x.L, (hb.blk + 1) * kStatsRowsPerSplit);
#pragma unroll 4
  for (int r = hb.blk * kStatsRowsPerSplit + s.sub; r < r_end; r += S::kRowsPerPass) {
    float v[8];
    load8(base + r * x.stride_l, v);
#pragma unroll
    for (int i = 0; i < 8; ++i) sum[i] += v[i], mx[i] = fmaxf(mx[i], v[i]), mn[i] = fminf(mn[i], v[i]);
  }
  __shared__ float red[3][S::kRowsPerPass][D];
#pragma unroll
  for (int i = 0; i < 8; ++i) red[0][s.sub][s.col + i] = sum[i], red[1][s.sub][s.col + i] = mx[i], red[2][s.sub][s.col + i] = mn[i];
  __syncthreads();
  const int64_t n_bh = int64_t(x.B) * x.H, bh = int64_t(hb.b) * x.H + hb.h;
  const int64_t plane = n_bh * splits * D;
  for (int c = threadIdx.x; c < D; c += kThreads) {
    float a = 0.f, m = -INFINITY, n = INFINITY;
    for (int j = 0; j < S::kRowsPerPass; ++j) a += red[0][j][c], m = fmaxf(m, red[1][j][c]), n = fminf(n, red[2][j][c]);
    const int64_t o = (bh * splits + hb.blk) * D + c;
    st.work[o] = a, st.work[plane + o] = m, st.work[2 * plane + o] = n;
  }
  // Last-block finish (the threadFenceReduction pattern): each writer's partials are visible device-wide before
  // the block's arrival is counted; the block that counts `splits` reads them all.
  __threadfence();
  __syncthreads();
  __shared__ bool last;
  if (threadIdx.x == 0) last = atomicAdd(st.arrivals + bh, 1u) == unsigned(splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int c = threadIdx.x; c < D; c += kThreads) finish_channel(st, splits, x.L, D, n_bh, bh, c);
}

// INT8 role: R rows (one or more whole scale groups) of x - mean -> codes [B, H, L, D] and scales.
template <typename T, int D, int R>
__device__ __forceinline__ void int8_block(const Strided16& x, const Int8Spec& job, const HeadBlock& hb) {
  using S = RowSlice<T, D>;
  constexpr int kPasses = R / S::kRowsPerPass;
  static_assert(kPasses >= 1 && R % S::kRowsPerPass == 0, "group rows must cover whole passes");
  const S s;
  const int L = x.L, H = x.H, residues = job.residues;
  const int n_groups = (L + R - 1) / R * residues;
  const int64_t bh = int64_t(hb.b) * H + hb.h;
  __shared__ unsigned int group_amax[8];
  if (threadIdx.x < 8) group_amax[threadIdx.x] = 0u;
  float mu[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (job.mean != nullptr) {
#pragma unroll
    for (int i = 0; i < 8; ++i) mu[i] = job.mean[bh * D + s.col + i];
  }
  __syncthreads();
  const T* base = head_base<T>(x, hb) + s.col;
  // All of the block's loads first, kept as raw 16-byte words (4 registers per 8 values, not 8): half the
  // registers of float copies, so more blocks per SM keep more bytes in flight (measured 5-8% faster).
  uint4 raw[kPasses];
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int row = hb.blk * R + p * S::kRowsPerPass + s.sub;
    raw[p] = row < L ? *reinterpret_cast<const uint4*>(base + row * x.stride_l) : make_uint4(0u, 0u, 0u, 0u);
  }
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int row = hb.blk * R + p * S::kRowsPerPass + s.sub;
    float amax = 0.f;
    if (row < L) {
      float v[8];
      unpack8<T>(raw[p], v);
#pragma unroll
      for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(v[i] - mu[i]));
    }
    amax = group_max<S::kThreadsPerRow>(amax);
    const int g = residues == 8 ? (row & 7) : residues == 4 ? ((row & 7) >> 1) : 0;
    if (s.col == 0 && row < L) atomicMax(&group_amax[g], __float_as_uint(amax));  // amax >= 0: uint order = float order
  }
  __syncthreads();
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int row = hb.blk * R + p * S::kRowsPerPass + s.sub;
    if (row >= L) continue;
    const int g = residues == 8 ? (row & 7) : residues == 4 ? ((row & 7) >> 1) : 0;
    const float amax = __uint_as_float(group_amax[g]);
    const float inv = amax > 0.f ? __frcp_rn(amax) * 127.f : 0.f;  // = torch's 127 / amax, so codes match spec.py
    uint32_t w[2] = {0u, 0u};
    float v[8];
    unpack8<T>(raw[p], v);  // the same conversions and subtraction as above: the same values
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int q = max(-127, min(127, __float2int_rn((v[i] - mu[i]) * inv)));
      w[i / 4] |= uint32_t(q & 0xff) << (8 * (i % 4));
    }
    *reinterpret_cast<uint2*>(job.codes + (bh * L + row) * D + s.col) = make_uint2(w[0], w[1]);
  }
  if (threadIdx.x < residues) {
    job.scales[bh * n_groups + hb.blk * residues + threadIdx.x] = __uint_as_float(group_amax[threadIdx.x]) * (1.f / 127.f);
  }
}

// FP8 V role: D threads per 64 keys (kThreads / D tiles per block); a thread owns 2 channels x 32 keys, so the
// transpose and the key permutation happen in registers: it reads 32 rows of 4 bytes (a warp reads 128
// contiguous bytes per row) and writes 32 contiguous bytes per channel.
template <typename T, int D>
__device__ __forceinline__ void fp8_v_block(const Strided16& v, const Fp8Spec& job, const HeadBlock& hb) {
  constexpr int kKeys = 32, kTilesPerBlock = kThreads / D;
  const int t = threadIdx.x % D, tile = hb.blk * kTilesPerBlock + threadIdx.x / D;
  if (tile * 64 >= job.l_pad) return;
  const int pair = t % (D / 2), half = t / (D / 2), c = 2 * pair;
  const int L = v.L;
  const int64_t bh = int64_t(hb.b) * v.H + hb.h;
  const int key0 = tile * 64 + half * kKeys;
  float mu[2], inv[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    mu[i] = job.mean[bh * D + c + i];
    const float a = job.amax[bh * D + c + i];
    inv[i] = a > 0.f ? __frcp_rn(a) * 448.f : 0.f;  // = torch's 448 / amax
  }
  const T* base = head_base<T>(v, hb) + c;
  uint32_t raw[kKeys];
#pragma unroll
  for (int k = 0; k < kKeys; ++k) raw[k] = key0 + k < L ? *reinterpret_cast<const uint32_t*>(base + int64_t(key0 + k) * v.stride_l) : 0u;
  uint32_t out[2][kKeys / 4] = {};
#pragma unroll
  for (int k = 0; k < kKeys; ++k) {
    const float2 x = Vec16<T>::to_float2(raw[k]);
    const bool ok = key0 + k < L;  // padding keys are zero codes, not quantized -mean
    const float q0 = ok ? (x.x - mu[0]) * inv[0] : 0.f, q1 = ok ? (x.y - mu[1]) * inv[1] : 0.f;
    const int pos = (k & ~15) + v16_position(k & 15);
    out[0][pos / 4] |= uint32_t(__nv_cvt_float_to_fp8(q0, __NV_SATFINITE, __NV_E4M3)) << (8 * (pos % 4));
    out[1][pos / 4] |= uint32_t(__nv_cvt_float_to_fp8(q1, __NV_SATFINITE, __NV_E4M3)) << (8 * (pos % 4));
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    uint4* dst = reinterpret_cast<uint4*>(job.vt + (bh * D + c + i) * job.l_pad + key0);
    dst[0] = make_uint4(out[i][0], out[i][1], out[i][2], out[i][3]);
    dst[1] = make_uint4(out[i][4], out[i][5], out[i][6], out[i][7]);
  }
}

// Blocks per head of each role.
__host__ __device__ inline int int8_blocks(int L, int rows) { return (L + rows - 1) / rows; }
template <int D>
__host__ __device__ inline int fp8_v_blocks(int l_pad) {
  constexpr int kTilesPerBlock = kThreads / D;
  return (l_pad / 64 + kTilesPerBlock - 1) / kTilesPerBlock;
}

// The launch grids: roles laid out one after the other in blockIdx.x (counts in Pass1Grid / Pass2Grid).
struct Pass1Grid {
  int64_t k_stats, v_stats;  // blocks of each role (0: absent)
};
struct Pass2Grid {
  int64_t k_int8, v_fp8;
};

// Q's INT8 codes: a launch of its own. Inside pass 1 its small blocks ran at the stats role's register count
// (62 vs 32-36), half the blocks per SM; measured 2-6% slower overall at N >= 4K.
template <typename T, int D, int QR>
__global__ void __launch_bounds__(kThreads) quant_q(QuantJobs jobs) {
  int8_block<T, D, QR>(jobs.q, jobs.q_int8, HeadBlock(blockIdx.x, int8_blocks(jobs.q.L, QR), jobs.q.H));
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) quant_pass1(QuantJobs jobs, Pass1Grid grid) {
  int64_t i = blockIdx.x;
  if (i < grid.k_stats) return stats_block<T, D>(jobs.k, jobs.k_stats, HeadBlock(i, stats_splits(jobs.k.L), jobs.k.H));
  i -= grid.k_stats;
  stats_block<T, D>(jobs.v, jobs.v_stats, HeadBlock(i, stats_splits(jobs.v.L), jobs.v.H));
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) quant_pass2(QuantJobs jobs, Pass2Grid grid) {
  int64_t i = blockIdx.x;
  if (i < grid.k_int8) return int8_block<T, D, kKRows>(jobs.k, jobs.k_int8, HeadBlock(i, int8_blocks(jobs.k.L, kKRows), jobs.k.H));
  i -= grid.k_int8;
  fp8_v_block<T, D>(jobs.v, jobs.v_fp8, HeadBlock(i, fp8_v_blocks<D>(jobs.v_fp8.l_pad), jobs.v.H));
}

}  // namespace sage::quant

// Quantization kernels. Torch-free. Every kernel reads its input once; a CTA owns whole scale groups so the
// group amax never leaves shared memory. Threads read 16 bytes (8 channels) of one row per access.
#pragma once
#include <cstdint>

#include "common/numeric.cuh"

namespace sage::quant {

constexpr int kThreads = 128;
constexpr int kStatsRowsPerSplit = 512;  // rows one stats CTA reduces; B*H*L/512 CTAs fill the GPU at N >= 4K

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

// Partial sum / max / min per channel over kStatsRowsPerSplit rows: work[3][B*H][splits][D].
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) seq_stats_partial(const T* x, int64_t sb, int64_t sh, int64_t sl, int L,
                                                              float* work) {
  using S = RowSlice<T, D>;
  const S s;
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const T* base = x + b * sb + h * sh + s.col;
  float sum[8], mx[8], mn[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) sum[i] = 0.f, mx[i] = -INFINITY, mn[i] = INFINITY;
  const int r_end = min(L, (split + 1) * kStatsRowsPerSplit);
#pragma unroll 4
  for (int r = split * kStatsRowsPerSplit + s.sub; r < r_end; r += S::kRowsPerPass) {
    float v[8];
    load8(base + r * sl, v);
#pragma unroll
    for (int i = 0; i < 8; ++i) sum[i] += v[i], mx[i] = fmaxf(mx[i], v[i]), mn[i] = fminf(mn[i], v[i]);
  }
  __shared__ float red[3][S::kRowsPerPass][D];
#pragma unroll
  for (int i = 0; i < 8; ++i) red[0][s.sub][s.col + i] = sum[i], red[1][s.sub][s.col + i] = mx[i], red[2][s.sub][s.col + i] = mn[i];
  __syncthreads();
  const int splits = gridDim.x, bh = b * gridDim.y + h;
  const int64_t plane = int64_t(gridDim.z) * gridDim.y * splits * D;
  for (int c = threadIdx.x; c < D; c += kThreads) {
    float a = 0.f, m = -INFINITY, n = INFINITY;
    for (int j = 0; j < S::kRowsPerPass; ++j) a += red[0][j][c], m = fmaxf(m, red[1][j][c]), n = fminf(n, red[2][j][c]);
    const int64_t o = (int64_t(bh) * splits + split) * D + c;
    work[o] = a, work[plane + o] = m, work[2 * plane + o] = n;
  }
}

// One thread per (b, h, channel): combines the splits. amax of (x - mean) = max(max - mean, mean - min) exactly,
// since fp32 subtraction is monotone.
__global__ void seq_stats_finish(const float* work, int splits, int L, int D, int64_t n_bh, float* mean_out,
                                 float* amax_out, float* scale_out, float amax_divisor, bool center) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_bh * D) return;
  const int64_t bh = i / D, c = i % D, plane = n_bh * splits * D;
  float a = 0.f, m = -INFINITY, n = INFINITY;
#pragma unroll 8  // independent loads in flight: a rolled loop waits one memory latency per split
  for (int s = 0; s < splits; ++s) {
    const int64_t o = (bh * splits + s) * D + c;
    a += work[o], m = fmaxf(m, work[plane + o]), n = fminf(n, work[2 * plane + o]);
  }
  const float mean = L > 0 ? __fdiv_rn(a, float(L)) : 0.f;  // IEEE division even under --use_fast_math
  if (mean_out) mean_out[i] = center ? mean : 0.f;
  if (amax_out) {
    const float c0 = center ? mean : 0.f;
    const float amax = L > 0 ? fmaxf(m - c0, c0 - n) : 0.f;
    amax_out[i] = amax;
    scale_out[i] = amax * __frcp_rn(amax_divisor);  // torch divides by a scalar this way
  }
}

// INT8 quantization of R rows per CTA (one or more whole scale groups).
template <typename T, int D, int R>
__global__ void __launch_bounds__(kThreads) quant_int8_kernel(const T* x, int64_t sb, int64_t sh, int64_t sl, int L,
                                                              const float* mean, int residues, int8_t* codes,
                                                              float* scales, int n_groups) {
  using S = RowSlice<T, D>;
  constexpr int kPasses = R / S::kRowsPerPass;
  static_assert(kPasses >= 1 && R % S::kRowsPerPass == 0, "group rows must cover whole passes");
  const S s;
  const int blk = blockIdx.x, h = blockIdx.y, b = blockIdx.z, H = gridDim.y;
  __shared__ unsigned int group_amax[8];
  if (threadIdx.x < 8) group_amax[threadIdx.x] = 0u;
  float mu[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (mean != nullptr) {
#pragma unroll
    for (int i = 0; i < 8; ++i) mu[i] = mean[(int64_t(b) * H + h) * D + s.col + i];
  }
  __syncthreads();
  const T* base = x + b * sb + h * sh + s.col;
  float v[kPasses][8];
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int row = blk * R + p * S::kRowsPerPass + s.sub;
    float amax = 0.f;
    if (row < L) {
      load8(base + row * sl, v[p]);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[p][i] -= mu[i], amax = fmaxf(amax, fabsf(v[p][i]));
    }
    amax = group_max<S::kThreadsPerRow>(amax);
    const int g = residues == 8 ? (row & 7) : residues == 4 ? ((row & 7) >> 1) : 0;
    if (s.col == 0 && row < L) atomicMax(&group_amax[g], __float_as_uint(amax));  // amax >= 0: uint order = float order
  }
  __syncthreads();
#pragma unroll
  for (int p = 0; p < kPasses; ++p) {
    const int row = blk * R + p * S::kRowsPerPass + s.sub;
    if (row >= L) continue;
    const int g = residues == 8 ? (row & 7) : residues == 4 ? ((row & 7) >> 1) : 0;
    const float amax = __uint_as_float(group_amax[g]);
    const float inv = amax > 0.f ? __frcp_rn(amax) * 127.f : 0.f;  // = torch's 127 / amax, so codes match spec.py
    uint32_t w[2] = {0u, 0u};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int q = max(-127, min(127, __float2int_rn(v[p][i] * inv)));
      w[i / 4] |= uint32_t(q & 0xff) << (8 * (i % 4));
    }
    *reinterpret_cast<uint2*>(codes + ((int64_t(b) * H + h) * L + row) * D + s.col) = make_uint2(w[0], w[1]);
  }
  if (threadIdx.x < residues) {
    scales[(int64_t(b) * H + h) * n_groups + blk * residues + threadIdx.x] = __uint_as_float(group_amax[threadIdx.x]) * (1.f / 127.f);
  }
}

// FP8 V: one CTA per 64 keys, D threads; a thread owns 2 channels x 32 keys, so the transpose and the key
// permutation happen in registers: it reads 32 rows of 4 bytes (a warp reads 128 contiguous bytes per row) and
// writes 32 contiguous bytes per channel.
template <typename T, int D>
__global__ void __launch_bounds__(D) quant_v_fp8_kernel(const T* v, int64_t sb, int64_t sh, int64_t sl, int L,
                                                       const float* mean, const float* amax, uint8_t* vt, int l_pad) {
  constexpr int kKeys = 32;
  const int pair = threadIdx.x % (D / 2), half = threadIdx.x / (D / 2), c = 2 * pair;
  const int tile = blockIdx.x, h = blockIdx.y, b = blockIdx.z, H = gridDim.y;
  const int64_t bh = int64_t(b) * H + h;
  const int key0 = tile * 64 + half * kKeys;
  float mu[2], inv[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    mu[i] = mean[bh * D + c + i];
    const float a = amax[bh * D + c + i];
    inv[i] = a > 0.f ? __frcp_rn(a) * 448.f : 0.f;  // = torch's 448 / amax
  }
  const T* base = v + b * sb + h * sh + c;
  uint32_t raw[kKeys];
#pragma unroll
  for (int k = 0; k < kKeys; ++k) raw[k] = key0 + k < L ? *reinterpret_cast<const uint32_t*>(base + int64_t(key0 + k) * sl) : 0u;
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
    uint4* dst = reinterpret_cast<uint4*>(vt + (bh * D + c + i) * l_pad + key0);
    dst[0] = make_uint4(out[i][0], out[i][1], out[i][2], out[i][3]);
    dst[1] = make_uint4(out[i][4], out[i][5], out[i][6], out[i][7]);
  }
}

}  // namespace sage::quant

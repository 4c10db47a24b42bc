// Standalone check of the sm90 building blocks the attention kernel stands on, one warpgroup, no torch:
//   qk: TMA (128-/64-byte swizzle) -> wgmma s8 m64n64k32 from shared memory, read back through the accumulator
//       layout softmax.cuh assumes; must equal the integer product exactly.
//   pv: P in the S accumulator layout -> pack_p_fragments -> wgmma e4m3 from registers against a Vᵀ tile with
//       the V16 key permutation (TMA, 64-byte swizzle); must equal the fp32 sum of the decoded products.
// Not part of _C_sm90 (setup.py compiles only csrc/sm90/*.cu). scripts/device_sm90.sh builds and runs it:
//   nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -Icsrc csrc/sm90/selftest/selftest.cu -o selftest
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common/sm90/mbarrier.cuh"
#include "common/sm90/tma.cuh"
#include "common/sm90/tma_host.h"
#include "common/sm90/wgmma.cuh"
#include "sm90/softmax.cuh"

using namespace sageattn::sm90;

#define CHECK(x)                                                                        \
  do {                                                                                  \
    cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) {                                                            \
      std::printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                     \
    }                                                                                   \
  } while (0)

// Row and column of accumulator element i of thread `tid` (0..127) in a 64 x N tile.
__host__ __device__ inline void acc_position(int tid, int i, int& row, int& col) {
  const int warp = tid / 32, lane = tid % 32;
  row = 16 * warp + lane / 4 + 8 * ((i % 4) / 2);
  col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
}

template <int D>
__global__ void __launch_bounds__(128) qk_kernel(const __grid_constant__ CUtensorMap tm_a,
                                                 const __grid_constant__ CUtensorMap tm_b, int32_t* out) {
  extern __shared__ uint8_t raw[];
  uint8_t* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t{1023});
  uint8_t* a = base;
  uint8_t* b = base + 64 * D;
  __shared__ uint64_t bar;
  if (threadIdx.x == 0) {
    mbarrier_init(&bar, 1);
    mbarrier_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(&bar, 2 * 64 * D);
    tma_load_4d(a, &tm_a, &bar, 0, 0, 0, 0);
    tma_load_4d(b, &tm_b, &bar, 0, 0, 0, 0);
  }
  mbarrier_wait(&bar, 0);
  int32_t acc[32] = {};
  const uint64_t da = make_smem_desc<D>(smem_u32(a)), db = make_smem_desc<D>(smem_u32(b));
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 32; ++kk) {
    WgmmaS8<64>::ss(acc, desc_advance(da, 32 * kk), desc_advance(db, 32 * kk), kk);
  }
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(acc);
  for (int i = 0; i < 32; ++i) {
    int row, col;
    acc_position(threadIdx.x, i, row, col);
    out[row * 64 + col] = acc[i];
  }
}

template <int D>
__global__ void __launch_bounds__(128) pv_kernel(const float* p, const __grid_constant__ CUtensorMap tm_vt,
                                                 float* out) {
  extern __shared__ uint8_t raw[];
  uint8_t* vt = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t{1023});
  __shared__ uint64_t bar;
  if (threadIdx.x == 0) {
    mbarrier_init(&bar, 1);
    mbarrier_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(&bar, D * 64);
    tma_load_4d(vt, &tm_vt, &bar, 0, 0, 0, 0);
  }
  float s[32];
  for (int i = 0; i < 32; ++i) {  // P (64 rows x 64 keys) as the Q·Kᵀ accumulator would hold it
    int row, col;
    acc_position(threadIdx.x, i, row, col);
    s[i] = p[row * 64 + col];
  }
  uint32_t frag[2][4];
  pack_p_fragments<64>(s, frag);
  mbarrier_wait(&bar, 0);
  float acc[D / 2] = {};
  const uint64_t dv = make_smem_desc<64>(smem_u32(vt));
  wgmma_fence();
  WgmmaE4m3<D>::rs(acc, frag[0], dv, 0);
  WgmmaE4m3<D>::rs(acc, frag[1], desc_advance(dv, 32), 1);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(acc);
  for (int i = 0; i < D / 2; ++i) {
    int row, col;
    acc_position(threadIdx.x, i, row, col);
    out[row * D + col] = acc[i];
  }
}

static ByteTensor4d matrix(const void* data, uint64_t inner, uint64_t rows) {
  return ByteTensor4d{data, {inner, rows, 1, 1}, {inner, inner * rows, inner * rows}};
}

template <int D>
static bool check_qk() {
  std::vector<int8_t> a(64 * D), b(64 * D);
  for (auto& x : a) x = static_cast<int8_t>(std::rand() % 255 - 127);
  for (auto& x : b) x = static_cast<int8_t>(std::rand() % 255 - 127);
  int8_t *da, *db;
  int32_t* dout;
  CHECK(cudaMalloc(&da, a.size()));
  CHECK(cudaMalloc(&db, b.size()));
  CHECK(cudaMalloc(&dout, 64 * 64 * sizeof(int32_t)));
  CHECK(cudaMemcpy(da, a.data(), a.size(), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(db, b.data(), b.size(), cudaMemcpyHostToDevice));
  CUtensorMap ta, tb;
  std::string err = encode_tiled_4d(&ta, matrix(da, D, 64), D, 64, D);
  if (err.empty()) err = encode_tiled_4d(&tb, matrix(db, D, 64), D, 64, D);
  if (!err.empty()) return std::printf("qk D=%d: %s\n", D, err.c_str()), false;
  const int smem = 2 * 64 * D + 1024;
  CHECK(cudaFuncSetAttribute(qk_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  qk_kernel<D><<<1, 128, smem>>>(ta, tb, dout);
  CHECK(cudaDeviceSynchronize());
  std::vector<int32_t> out(64 * 64);
  CHECK(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < 64; ++c) {
      int32_t want = 0;
      for (int k = 0; k < D; ++k) want += int32_t(a[r * D + k]) * int32_t(b[c * D + k]);
      if (out[r * 64 + c] != want && bad++ < 5) {
        std::printf("  qk D=%d [%d,%d] got %d want %d\n", D, r, c, out[r * 64 + c], want);
      }
    }
  }
  std::printf("qk  D=%-3d TMA %d-byte swizzle + wgmma s8: %s (%d of 4096 wrong)\n", D, D, bad ? "FAIL" : "ok",
              bad);
  cudaFree(da), cudaFree(db), cudaFree(dout);
  return bad == 0;
}

template <int D>
static bool check_pv() {
  const int v16_position[16] = {0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15};  // ops/quant.py V16_POSITION
  std::vector<float> p(64 * 64), v(64 * D);  // already on the e4m3 grid, so packing is exact
  auto e4m3 = [](float x) { return float(__nv_fp8_e4m3(x)); };
  for (auto& x : p) x = e4m3(448.f * (std::rand() % 1000) / 1000.f);
  for (auto& x : v) x = e4m3(((std::rand() % 2001) - 1000) * 0.4f);
  std::vector<uint8_t> vt(D * 64);  // Vᵀ [D][64 keys], keys permuted inside each group of 16
  for (int key = 0; key < 64; ++key) {
    for (int d = 0; d < D; ++d) {
      vt[d * 64 + 16 * (key / 16) + v16_position[key % 16]] = __nv_fp8_e4m3(v[key * D + d]).__x;
    }
  }
  float *dp, *dout;
  uint8_t* dvt;
  CHECK(cudaMalloc(&dp, p.size() * 4));
  CHECK(cudaMalloc(&dvt, vt.size()));
  CHECK(cudaMalloc(&dout, 64 * D * 4));
  CHECK(cudaMemcpy(dp, p.data(), p.size() * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dvt, vt.data(), vt.size(), cudaMemcpyHostToDevice));
  CUtensorMap tv;
  std::string err = encode_tiled_4d(&tv, matrix(dvt, 64, D), 64, D, 64);
  if (!err.empty()) return std::printf("pv D=%d: %s\n", D, err.c_str()), false;
  const int smem = D * 64 + 1024;
  CHECK(cudaFuncSetAttribute(pv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  pv_kernel<D><<<1, 128, smem>>>(dp, tv, dout);
  CHECK(cudaDeviceSynchronize());
  std::vector<float> out(64 * D);
  CHECK(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost));
  int bad = 0;
  double worst = 0;
  for (int r = 0; r < 64; ++r) {
    for (int d = 0; d < D; ++d) {
      double want = 0, scale = 0;
      for (int k = 0; k < 64; ++k) {
        want += double(p[r * 64 + k]) * v[k * D + d];
        scale += std::fabs(double(p[r * 64 + k]) * v[k * D + d]);
      }
      const double rel = std::fabs(out[r * D + d] - want) / std::max(scale, 1.0);
      worst = std::max(worst, rel);
      // FP8 wgmma accumulates with fewer than fp32's mantissa bits: a wrong layout is off by O(1), not 1e-3.
      if (rel > 1e-3 && bad++ < 5) std::printf("  pv D=%d [%d,%d] got %g want %g\n", D, r, d, out[r * D + d], want);
    }
  }
  std::printf("pv  D=%-3d P fragments + permuted Vᵀ + wgmma e4m3: %s (%d wrong, worst rel %.1e)\n", D,
              bad ? "FAIL" : "ok", bad, worst);
  cudaFree(dp), cudaFree(dvt), cudaFree(dout);
  return bad == 0;
}

int main() {
  std::srand(1234);
  bool ok = check_qk<64>() & check_qk<128>() & check_pv<64>() & check_pv<128>();
  std::printf("%s\n", ok ? "selftest passed" : "selftest FAILED");
  return ok ? 0 : 1;
}

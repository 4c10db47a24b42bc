// Warpgroup matrix multiply (wgmma.mma_async, sm_90a): shared-memory descriptors, ordering, and the
// shapes the sm90 attention kernel issues. Torch-free.
//
// Fragment layout of a 64 x N accumulator (PTX ISA, wgmma register fragments): warp w of the warpgroup owns
// rows 16w..16w+15; lane l holds, for each 8-column block b, d[4b + e] at row 16w + l/4 + 8*(e/2) and
// column 8b + 2*(l%4) + e%2. An 8-bit A fragment of k32 (4 registers) holds row l/4 (regs 0, 2) and
// l/4 + 8 (regs 1, 3), columns 4*(l%4)..+3 (regs 0, 1) and 16 + 4*(l%4)..+3 (regs 2, 3), low byte first.
#pragma once

#include "common/sm90/arch.cuh"

namespace sageattn::sm90 {

// Descriptor of a K-major operand tile whose rows are `kSwizzleBytes` wide and swizzled by TMA's mode of
// the same width. Core matrices are 8 rows x 16 bytes; 8-row groups lie 8 * kSwizzleBytes apart (SBO);
// the leading offset is unused for swizzled K-major tiles. The tile must start on a multiple of
// 8 * kSwizzleBytes; advance along K inside a row by adding bytes to `smem_addr`.
template <int kSwizzleBytes>
__device__ __forceinline__ uint64_t make_smem_desc(uint32_t smem_addr) {
  static_assert(kSwizzleBytes == 128 || kSwizzleBytes == 64 || kSwizzleBytes == 32, "swizzled layouts only");
  constexpr uint64_t mode = kSwizzleBytes == 128 ? 1 : kSwizzleBytes == 64 ? 2 : 3;
  constexpr uint64_t stride_16b = (8 * kSwizzleBytes) >> 4;
  return static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4) | (uint64_t{1} << 16) | (stride_16b << 32) |
         (mode << 62);
}

// Descriptor advanced by `bytes` (a multiple of 16) within shared memory. Only the low word changes: the
// 14-bit start address cannot carry out of it (shared memory is < 256 KB), and a 32-bit add keeps the
// per-wgmma descriptor arithmetic to one IADD instead of a 64-bit add with carry.
__device__ __forceinline__ uint64_t desc_advance(uint64_t desc, uint32_t bytes) {
  const uint32_t lo = static_cast<uint32_t>(desc) + (bytes >> 4), hi = static_cast<uint32_t>(desc >> 32);
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// Orders register writes before the next wgmma reads them (accumulators, A fragments).
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Waits until at most kPending committed groups are still running.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving accesses of wgmma-owned registers across a wait.
template <int kCount>
__device__ __forceinline__ void fence_registers(float (&regs)[kCount]) {
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+f"(regs[i])::"memory");
}

template <typename Int, int kCount>
__device__ __forceinline__ void fence_registers(Int (&regs)[kCount]) {
  static_assert(sizeof(Int) == 4, "32-bit registers");
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+r"(regs[i])::"memory");
}

template <int kRows, int kCols>
__device__ __forceinline__ void fence_registers(uint32_t (&regs)[kRows][kCols]) {
#pragma unroll
  for (int i = 0; i < kRows; ++i) fence_registers(regs[i]);
}

// Operand lists of the accumulator fragments, which wgmma names register by register: constraint `k` ("+r" or
// "+f") on d[i] .. d[i + 3] / d[i + 31], and the matching register numbers of the PTX string.
#define SAGEATTN_ACC4(k, d, i) k(d[(i)]), k(d[(i) + 1]), k(d[(i) + 2]), k(d[(i) + 3])
#define SAGEATTN_ACC32(k, d, i)                                                                 \
  SAGEATTN_ACC4(k, d, i), SAGEATTN_ACC4(k, d, (i) + 4), SAGEATTN_ACC4(k, d, (i) + 8),           \
      SAGEATTN_ACC4(k, d, (i) + 12), SAGEATTN_ACC4(k, d, (i) + 16), SAGEATTN_ACC4(k, d, (i) + 20), \
      SAGEATTN_ACC4(k, d, (i) + 24), SAGEATTN_ACC4(k, d, (i) + 28)
#define SAGEATTN_REGS_0_31 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define SAGEATTN_REGS_32_63 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

template <int N>
struct WgmmaS8 {
  static_assert(N == 64 || N == 128, "add the shape's operand list below");
};

// N = D + 8 (72, 136): P·V with the row sums of P in the last 8 columns (Vᵀ tiles carry 8 rows of ones, tile.cuh).
template <int N>
struct WgmmaE4m3 {
  static_assert(N == 64 || N == 128 || N == 72 || N == 136, "add the shape's operand list below");
};

// D[64 x 64] (+)= A[64 x 32] * B[64 x 32]^T, s8 * s8 -> s32, both operands K-major in shared memory.
template <>
struct WgmmaS8<64> {
  __device__ __forceinline__ static void ss(int32_t (&d)[32], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred acc;\nsetp.ne.b32 acc, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 {" SAGEATTN_REGS_0_31 "}, %32, %33, acc;\n}\n"
        : SAGEATTN_ACC32("+r", d, 0)
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
  }
};

// D[64 x 128] (+)= A[64 x 32] * B[128 x 32]^T, s8 * s8 -> s32, both operands K-major in shared memory.
template <>
struct WgmmaS8<128> {
  __device__ __forceinline__ static void ss(int32_t (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred acc;\nsetp.ne.b32 acc, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {" SAGEATTN_REGS_0_31 ", " SAGEATTN_REGS_32_63
        "}, %64, %65, acc;\n}\n"
        : SAGEATTN_ACC32("+r", d, 0), SAGEATTN_ACC32("+r", d, 32)
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
  }
};

// D[64 x N] (+)= A[64 x 32] * B[N x 32]^T, e4m3 * e4m3 -> f32, A from registers, B K-major in shared memory.
template <>
struct WgmmaE4m3<64> {
  __device__ __forceinline__ static void rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred acc;\nsetp.ne.b32 acc, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 {" SAGEATTN_REGS_0_31
        "}, {%32, %33, %34, %35}, %36, acc, 1, 1;\n}\n"
        : SAGEATTN_ACC32("+f", d, 0)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
  }
};

template <>
struct WgmmaE4m3<72> {
  __device__ __forceinline__ static void rs(float (&d)[36], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred acc;\nsetp.ne.b32 acc, %41, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n72k32.f32.e4m3.e4m3 {" SAGEATTN_REGS_0_31
        ", %32, %33, %34, %35}, {%36, %37, %38, %39}, %40, acc, 1, 1;\n}\n"
        : SAGEATTN_ACC32("+f", d, 0), SAGEATTN_ACC4("+f", d, 32)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
  }
};

template <>
struct WgmmaE4m3<128> {
  __device__ __forceinline__ static void rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred acc;\nsetp.ne.b32 acc, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {" SAGEATTN_REGS_0_31 ", " SAGEATTN_REGS_32_63
        "}, {%64, %65, %66, %67}, %68, acc, 1, 1;\n}\n"
        : SAGEATTN_ACC32("+f", d, 0), SAGEATTN_ACC32("+f", d, 32)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
  }
};

template <>
struct WgmmaE4m3<136> {
  __device__ __forceinline__ static void rs(float (&d)[68], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred acc;\nsetp.ne.b32 acc, %73, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n136k32.f32.e4m3.e4m3 {" SAGEATTN_REGS_0_31 ", " SAGEATTN_REGS_32_63
        ", %64, %65, %66, %67}, {%68, %69, %70, %71}, %72, acc, 1, 1;\n}\n"
        : SAGEATTN_ACC32("+f", d, 0), SAGEATTN_ACC32("+f", d, 32), SAGEATTN_ACC4("+f", d, 64)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
  }
};

#undef SAGEATTN_REGS_32_63
#undef SAGEATTN_REGS_0_31
#undef SAGEATTN_ACC32
#undef SAGEATTN_ACC4

}  // namespace sageattn::sm90

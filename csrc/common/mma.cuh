// Warp-level tensor-core wrappers in inline PTX: ldmatrix and mma.sync for s8, f16, bf16 and e4m3.
// Fragment layouts follow the PTX ISA ("Matrix fragments for mma.m16n8k16/k32"). Torch-free.
#pragma once
#include <cstdint>

#include "common/arch.cuh"

namespace sage {

// Four 8x8 b16 matrices; lane l supplies the row address of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// The s8 mma on accumulators kept in float registers that hold 1.5·2^23 + the s32 sum (sm80/attention_kernel.cuh):
// the bits are an s32 to the mma and a float to the code that reads them, with no conversion in between.
// `_init` starts every element at the bits `c` instead of accumulating onto d.
__device__ __forceinline__ void mma_s8_m16n8k32_biased(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "{\n.reg .s32 d<4>;\n"
      "mov.b32 d0, %0; mov.b32 d1, %1; mov.b32 d2, %2; mov.b32 d3, %3;\n"
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {d0, d1, d2, d3}, {%4, %5, %6, %7}, {%8, %9}, {d0, d1, d2, d3};\n"
      "mov.b32 %0, d0; mov.b32 %1, d1; mov.b32 %2, d2; mov.b32 %3, d3;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_s8_m16n8k32_biased_init(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                                            int32_t c) {
  asm volatile(
      "{\n.reg .s32 d<4>;\n"
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {d0, d1, d2, d3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %10, %10, %10};\n"
      "mov.b32 %0, d0; mov.b32 %1, d1; mov.b32 %2, d2; mov.b32 %3, d3;\n}\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c));
}

// D = A(16x16) * B(16x8) + D for 16-bit inputs (IS_BF16 picks bf16), fp32 accumulate.
template <bool IS_BF16>
__device__ __forceinline__ void mma_16bit_m16n8k16_f32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (IS_BF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// fp16 inputs, fp16 accumulate: d holds two half2 (rows r and r + 8).
__device__ __forceinline__ void mma_f16_m16n8k16_f16(uint32_t (&d)[2], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0, %1}, {%2, %3, %4, %5}, {%6, %7}, {%0, %1};\n"
      : "+r"(d[0]), "+r"(d[1])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// D = A(16x32 e4m3) * B(32x8 e4m3) + D, fp32 accumulate (sm89+).
__device__ __forceinline__ void mma_e4m3_m16n8k32_f32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if SAGE_DEVICE_ARCH >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  SAGE_REQUIRE_ARCH(890);
#endif
}

// e4m3 inputs, fp16 accumulate (sm89+, nvcc >= 12.8): d holds two half2.
__device__ __forceinline__ void mma_e4m3_m16n8k32_f16(uint32_t (&d)[2], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if SAGE_DEVICE_ARCH >= 890 && SAGE_HAS_FP8_F16_ACCUM
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f16.e4m3.e4m3.f16 {%0, %1}, {%2, %3, %4, %5}, {%6, %7}, {%0, %1};\n"
      : "+r"(d[0]), "+r"(d[1])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  SAGE_REQUIRE_ARCH(100000);  // never available in this build
#endif
}

}  // namespace sage

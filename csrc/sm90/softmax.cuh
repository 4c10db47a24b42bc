// Online softmax on a consumer thread's share of a 64 x 64 score tile, and the FP8 packing of P.
//
// A thread holds rows r = l/4 and r + 8 of its warp's 16 rows (lane l), as s[4b + e] for 8-key block b:
// row r + 8*(e/2), key 8b + 2*(l%4) + e%2 (wgmma accumulator layout). The four threads of a quad share a
// row, so row reductions take two xor-shuffles.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace sageattn::sm90 {

constexpr float kLog2FP8PScale = 8.807354922057604f;  // log2(448): P is stored as p * 448 (reference.FP8_P_SCALE)

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));  // ex2(-inf) = +0
  return y;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Exact int32 -> fp32 for |x| < 2^22 without the conversion unit (which the exponentials need): added to the
// bit pattern of 1.5 * 2^23, whose ulp is 1, x lands in the mantissa. INT8 Q·Kᵀ sums stay below 127² * 256.
__device__ __forceinline__ float small_int_to_float(int32_t x) {
  constexpr int32_t kMagicBits = 0x4B400000;  // 12582912.0f = 1.5 * 2^23
  return __int_as_float(x + kMagicBits) - 12582912.0f;
}

// Four floats -> four e4m3 bytes, x0 in the lowest byte (round to nearest, saturating).
__device__ __forceinline__ uint32_t pack_e4m3x4(float x0, float x1, float x2, float x3) {
  uint16_t lo, hi;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %2, %1;\n" : "=h"(lo) : "f"(x0), "f"(x1));  // first source -> high byte
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %2, %1;\n" : "=h"(hi) : "f"(x2), "f"(x3));
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

// Running statistics of the thread's two rows, in base 2 (Q's scale carries sm_scale * log2 e).
struct RowState {
  float max[2] = {-INFINITY, -INFINITY};
  float sum[2] = {0.f, 0.f};  // thread-partial sums of p * 448; quad_sum at the end
};

// Sets logits of keys a row may not see to -inf. key0: first key of the tile; key_limit[r]: last visible key.
__device__ __forceinline__ void mask_tile(float (&s)[32], int key0, int lane, const int (&key_limit)[2]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    const int key = key0 + 8 * (i / 4) + 2 * (lane % 4) + (i % 2);
    if (key > key_limit[(i / 2) % 2]) s[i] = -INFINITY;
  }
}

// Folds tile logits `s` into `state`: returns each row's rescale factor for earlier accumulations and
// overwrites s with p * 448 = exp2(s - m + log2 448). A row that has seen no key keeps max -inf, gets
// p = 0 and factor 0, never NaN (reference.py step 3).
__device__ __forceinline__ void online_softmax(float (&s)[32], RowState& state, float (&rescale)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int b = 0; b < 8; ++b) tile_max = fmaxf(tile_max, fmaxf(s[4 * b + 2 * r], s[4 * b + 2 * r + 1]));
    const float new_max = fmaxf(state.max[r], quad_max(tile_max));
    const float base = new_max == -INFINITY ? 0.f : new_max;
    rescale[r] = fast_exp2(state.max[r] - base);
    const float shift = base - kLog2FP8PScale;
    float row_sum = 0.f;
#pragma unroll
    for (int b = 0; b < 8; ++b) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& x = s[4 * b + 2 * r + e];
        x = fast_exp2(x - shift);
        row_sum += x;
      }
    }
    state.sum[r] = state.sum[r] * rescale[r] + row_sum;
    state.max[r] = new_max;
  }
}

// p * 448 of the tile -> e4m3 A fragments of the two k32 steps of P·V. The A fragment wants, per 16
// columns, bytes 4*(l%4)..+3 of rows r and r + 8; this thread has keys 2*(l%4)+{0,1} of blocks 2h and
// 2h+1 instead. Rather than exchanging bytes between lanes, the fragment keeps the thread's own keys and
// Vᵀ is stored with keys permuted to match: column 4c + e of each 16-key group holds key
// 8*(e/2) + 2c + e%2 (V_KEY_ORDER in ops/sm90.py).
__device__ __forceinline__ void pack_p_fragments(const float (&p)[32], uint32_t (&a)[2][4]) {
#pragma unroll
  for (int k = 0; k < 2; ++k) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int b = 4 * k + 2 * half;  // first 8-key block of this 16-key group
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        a[k][2 * half + r] = pack_e4m3x4(p[4 * b + 2 * r], p[4 * b + 2 * r + 1], p[4 * (b + 1) + 2 * r],
                                         p[4 * (b + 1) + 2 * r + 1]);
      }
    }
  }
}

}  // namespace sageattn::sm90

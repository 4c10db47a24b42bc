// Online softmax on a consumer thread's share of a 64 x kN score tile, and the FP8 packing of P.
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
constexpr float kMagic = 12582912.0f;       // 1.5 * 2^23
constexpr int32_t kMagicBits = 0x4B400000;  // its bit pattern

__device__ __forceinline__ float small_int_to_float(int32_t x) {
  return __int_as_float(x + kMagicBits) - kMagic;
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

// The K scale group (64 keys, quant/spec.py) of accumulator element i: 8-key block i/4, 8 blocks per group.
__device__ __forceinline__ constexpr int scale_group(int i) { return i / 32; }

// The fast exponent of unmasked tiles, fmaf(bits, scale, c), carries c's rounding: about ulp(kMagic * scale + |row
// max|). While |c| < 2^18 that is under 2^-7, p moves by under 0.6%, one factor for all of a row's keys of a
// group. Past it (scale products of fp16 inputs in the hundreds) it grows without bound: with inputs near 60000
// (logits ~1e11) it is thousands, and exp2 overflowed or flushed whole rows. Such tiles take the masked path,
// whose exponent x - shift is safe at any magnitude (see online_softmax).
template <int D>
__device__ __forceinline__ bool fast_exponent_is_safe(float scale) {
  constexpr float kLimit = 262144.0f / (kMagic + 127.0f * 127.0f * D);  // |c| < 2^18
  return scale < kLimit;
}

// Online softmax of one tile: folds the integer scores `acc` (dequantized by scale[group]: Q's scale x K's)
// into `state` (its row sums only with kRowSums: else the tensor cores sum P), returns each row's rescale
// factor for the earlier accumulation and writes p * 448 = exp2(s - m + log2 448) into `p`. kMasked: keys past key_limit[r] (last visible key of row r; key0 is the
// tile's first key) are hidden. A row that has seen no key keeps max -inf, gets p = 0 and factor 0, never
// NaN (reference.py step 3).
//
// Masked tiles dequantize each score once (rounded, never contracted) and the max and the exponent see that
// same value: x - shift <= log2 448 (+ a rounding) for every key, and the row's largest key gets at least 0,
// at any magnitude. Unmasked tiles, nearly all of them, keep the per-element work off the FP32 pipe where they
// can: the row max is taken on the integers (scales are positive and shared by a thread's keys of one group),
// and the int -> float conversion, dequantization and max subtraction are one FFMA on the magic-biased bits:
// (bits - M) * scale - shift = bits * scale + c with c = -(M * scale) - shift, c rounded once (callers send
// a tile here only when fast_exponent_is_safe).
template <int kN, bool kMasked, bool kRowSums = true>
__device__ __forceinline__ void online_softmax(const int32_t (&acc)[kN / 2], const float (&scale)[kN / 64],
                                               int key0, int lane, const int (&key_limit)[2], RowState& state,
                                               float (&rescale)[2], float (&p)[kN / 2]) {
  constexpr int kGroups = kN / 64;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float tile_max = -INFINITY;
    if constexpr (kMasked) {
#pragma unroll
      for (int b = 0; b < kN / 8; ++b) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int i = 4 * b + 2 * r + e;
          const int key = key0 + 8 * b + 2 * (lane % 4) + e;
          p[i] = key > key_limit[r] ? -INFINITY : __fmul_rn(small_int_to_float(acc[i]), scale[scale_group(i)]);
          tile_max = fmaxf(tile_max, p[i]);
        }
      }
    } else {
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        int group_max = INT32_MIN;
#pragma unroll
        for (int b = 8 * g; b < 8 * g + 8; ++b) {
          group_max = max(group_max, max(acc[4 * b + 2 * r], acc[4 * b + 2 * r + 1]));
        }
        tile_max = fmaxf(tile_max, small_int_to_float(group_max) * scale[g]);
      }
    }
    const float new_max = fmaxf(state.max[r], quad_max(tile_max));
    const float base = new_max == -INFINITY ? 0.f : new_max;
    rescale[r] = fast_exp2(state.max[r] - base);
    const float shift = base - kLog2FP8PScale;
    float sums[4] = {0.f, 0.f, 0.f, 0.f};  // four chains: one FADD chain of kN/4 would stall on its latency
    if constexpr (kMasked) {
#pragma unroll
      for (int b = 0; b < kN / 8; ++b) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = p[4 * b + 2 * r + e];
          x = fast_exp2(x - shift);
          if constexpr (kRowSums) sums[(2 * b + e) % 4] += x;
        }
      }
    } else {
#pragma unroll
      for (int g = 0; g < kGroups; ++g) {
        const float c = fmaf(-kMagic, scale[g], -shift);
#pragma unroll
        for (int b = 8 * g; b < 8 * g + 8; ++b) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int i = 4 * b + 2 * r + e;
            p[i] = fast_exp2(fmaf(__int_as_float(acc[i] + kMagicBits), scale[g], c));
            if constexpr (kRowSums) sums[(2 * b + e) % 4] += p[i];
          }
        }
      }
    }
    if constexpr (kRowSums) state.sum[r] = state.sum[r] * rescale[r] + ((sums[0] + sums[1]) + (sums[2] + sums[3]));
    state.max[r] = new_max;
  }
}

// p * 448 of the tile -> e4m3 A fragments of the kN/32 k32 steps of P·V. The A fragment wants, per 16
// columns, bytes 4*(l%4)..+3 of rows r and r + 8; this thread has keys 2*(l%4)+{0,1} of blocks 2h and
// 2h+1 instead. Rather than exchanging bytes between lanes, the fragment keeps the thread's own keys and
// Vᵀ is stored with keys permuted to match: column 4c + e of each 16-key group holds key
// 8*(e/2) + 2c + e%2 (V_KEY_ORDER in ops/sm90.py).
template <int kN>
__device__ __forceinline__ void pack_p_fragments(const float (&p)[kN / 2], uint32_t (&a)[kN / 32][4]) {
#pragma unroll
  for (int k = 0; k < kN / 32; ++k) {
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

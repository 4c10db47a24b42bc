// P·V with P and V in the input's 16-bit type (m16n8k16 mma). V is read straight from the caller's tensor.
// Torch-free.
#pragma once
#include <type_traits>

#include "sm80/attention_kernel.cuh"

namespace sage::attn {

template <int D, typename T, PvAccum MODE>
struct ValueFp16 {
  static_assert(MODE == PvAccum::kF32 || MODE == PvAccum::kF16ThenF32 || MODE == PvAccum::kF16, "fp16 P·V mode");
  static constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  static_assert(!kBf16 || MODE == PvAccum::kF32, "bf16 mma accumulates only in fp32");
  static constexpr int kChunks = D / 8;  // 16-byte chunks per V row
  static constexpr int kTileBytes = kBlockK * D * 2;

  // fp32 accumulation lets P reach 2^8 before the output is rescaled (attention_kernel.cuh); fp16 accumulators
  // would overflow at |V| ~ 4, so they rescale whenever a row max grows.
  static constexpr float kMaxLog2Growth = MODE == PvAccum::kF32 ? 8.f : 0.f;
  // Row sums of P come from one more mma per 16 keys against a B fragment of ones (the sum of the 16-bit P that
  // P·V used), instead of two FADDs per score: +2-3% (benchmarks/NOTES.md).
  static constexpr bool kTensorRowSums = true;
  static constexpr uint32_t kOnes = kBf16 ? 0x3F803F80u : 0x3C003C00u;  // two 1.0 in T

  uint32_t v_lane[4];  // lane part of the ldmatrix.trans address for each (dn % 8) / 2
  float o[D / 8][4];    // fp32 accumulator (kF32, kF16ThenF32)
  uint32_t oh[D / 8][2];  // fp16 accumulator (kF16): half2 of rows r, r + 8
  float lsum[4];          // kTensorRowSums: P·ones, row r in [0] and [1], row r + 8 in [2] and [3]

  static __device__ __forceinline__ float log2_p_scale(const AttentionParams&) { return 0.f; }

  static __device__ __forceinline__ void load(uint32_t smem, const AttentionParams& p, int b, int hkv, int tile) {
    const T* src = static_cast<const T*>(p.v) + b * p.v_stride_b + hkv * p.v_stride_h + int64_t(tile) * kBlockK * p.v_stride_l;
    TileCopy<kBlockK, kChunks>::any(smem, src, p.v_stride_l * 2, p.Lk - tile * kBlockK);
  }

  // Zeroes the accumulators. V rows 16kc + lane % 16 share the swizzle of lane % 8, chunk dn + lane / 16: the
  // chunk's bit 3 and the row only add immediates, leaving four lane offsets.
  __device__ __forceinline__ void init(int lane) {
#pragma unroll
    for (int i = 0; i < 4; ++i) v_lane[i] = swizzled_offset<kChunks>(lane % 16, 2 * i + lane / 16);
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.f;
      oh[dn][0] = oh[dn][1] = 0u;
    }
    lsum[0] = lsum[1] = lsum[2] = lsum[3] = 0.f;
  }

  __device__ __forceinline__ float row_sum(int half) const { return lsum[2 * half]; }

  __device__ __forceinline__ void rescale(float a0, float a1) {
    lsum[0] *= a0, lsum[1] *= a0, lsum[2] *= a1, lsum[3] *= a1;
    if constexpr (MODE == PvAccum::kF16) {
      const __half2 h0 = __float2half2_rn(a0), h1 = __float2half2_rn(a1);
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) {
        *reinterpret_cast<__half2*>(&oh[dn][0]) = __hmul2(*reinterpret_cast<__half2*>(&oh[dn][0]), h0);
        *reinterpret_cast<__half2*>(&oh[dn][1]) = __hmul2(*reinterpret_cast<__half2*>(&oh[dn][1]), h1);
      }
    } else {
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) o[dn][0] *= a0, o[dn][1] *= a0, o[dn][2] *= a1, o[dn][3] *= a1;
    }
  }

  // P (the QK accumulator layout, already exponentiated) times the V tile. The m16n8 accumulator of keys
  // 16kc..16kc+15 is exactly the m16n8k16 A fragment, so P never leaves registers.
  __device__ __forceinline__ void accumulate(const float (&s)[8][4], uint32_t smem, const AttentionParams&) {
    constexpr uint32_t kRow16Bytes = 16 * kChunks * 16;  // sixteen V rows
    uint32_t part[D / 8][2];
    if constexpr (MODE == PvAccum::kF16ThenF32) {
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) part[dn][0] = part[dn][1] = 0u;
    }
#pragma unroll
    for (int kc = 0; kc < kBlockK / 16; ++kc) {
      const uint32_t a[4] = {Vec16<T>::pack(s[2 * kc][0], s[2 * kc][1]), Vec16<T>::pack(s[2 * kc][2], s[2 * kc][3]),
                             Vec16<T>::pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                             Vec16<T>::pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
      if constexpr (kTensorRowSums) mma_16bit_m16n8k16_f32<kBf16>(lsum, a, kOnes, kOnes);
#pragma unroll
      for (int dn = 0; dn < D / 8; dn += 2) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, smem + v_lane[(dn % 8) / 2] + (dn / 8) * 128 + kc * kRow16Bytes);
        if constexpr (MODE == PvAccum::kF32) {
          mma_16bit_m16n8k16_f32<kBf16>(o[dn], a, vb[0], vb[1]);
          mma_16bit_m16n8k16_f32<kBf16>(o[dn + 1], a, vb[2], vb[3]);
        } else if constexpr (MODE == PvAccum::kF16ThenF32) {
          mma_f16_m16n8k16_f16(part[dn], a, vb[0], vb[1]);
          mma_f16_m16n8k16_f16(part[dn + 1], a, vb[2], vb[3]);
        } else {
          mma_f16_m16n8k16_f16(oh[dn], a, vb[0], vb[1]);
          mma_f16_m16n8k16_f16(oh[dn + 1], a, vb[2], vb[3]);
        }
      }
    }
    if constexpr (MODE == PvAccum::kF16ThenF32) {
#pragma unroll
      for (int dn = 0; dn < D / 8; ++dn) {
        const float2 x = Vec16<__half>::to_float2(part[dn][0]), y = Vec16<__half>::to_float2(part[dn][1]);
        o[dn][0] += x.x, o[dn][1] += x.y, o[dn][2] += y.x, o[dn][3] += y.y;
      }
    }
  }

  __device__ __forceinline__ void to_float(float (&out)[D / 8][4]) const {
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      if constexpr (MODE == PvAccum::kF16) {
        const float2 x = Vec16<__half>::to_float2(oh[dn][0]), y = Vec16<__half>::to_float2(oh[dn][1]);
        out[dn][0] = x.x, out[dn][1] = x.y, out[dn][2] = y.x, out[dn][3] = y.y;
      } else {
        out[dn][0] = o[dn][0], out[dn][1] = o[dn][1], out[dn][2] = o[dn][2], out[dn][3] = o[dn][3];
      }
    }
  }

  static __device__ __forceinline__ void finish(float (&)[D / 8][4], const AttentionParams&, int, int, int, bool, bool) {}
};

}  // namespace sage::attn

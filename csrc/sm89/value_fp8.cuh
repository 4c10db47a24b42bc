// P·V with P and V in FP8 e4m3 (m16n8k32 mma, sm89+). V arrives quantized per channel and transposed to
// [B, H, D, l_pad] with keys permuted inside each group of 16 (quant/quant_kernels.cuh: v16_position), so the
// QK accumulator of a lane is the e4m3 A fragment without any shuffle. Torch-free.
#pragma once
#include "sm80/attention_kernel.cuh"

namespace sage::attn {

template <int D, PvAccum MODE>
struct ValueFp8 {
  static_assert(MODE == PvAccum::kF32 || MODE == PvAccum::kF32ThenF32 || MODE == PvAccum::kF8F16ThenF32, "fp8 P·V mode");
  static constexpr int kChunks = kBlockK / 16;  // V^T rows (channels) of 64 keys
  static constexpr int kTileBytes = D * kBlockK;

  // P arrives already multiplied by p_scale (the kernel adds its log2 to the exponent), so it must not exceed 1
  // before that scale: e4m3 saturates at 448.
  static constexpr float kMaxLog2Growth = 0.f;
  // FADD row sums: on the H100 (where this can be measured) the e4m3 mma.sync is emulated, so a ones-column mma
  // would cost more there than the FADDs it replaces.
  static constexpr bool kTensorRowSums = false;

  uint32_t v_lane[kBlockK / 32];  // lane part of the ldmatrix address for each kc
  float o[D / 8][4];

  static __device__ __forceinline__ float log2_p_scale(const AttentionParams& p) { return __log2f(p.p_scale); }

  // V^T is padded to v_len_padded keys, so every tile is whole.
  static __device__ __forceinline__ void load(uint32_t smem, const AttentionParams& p, int b, int hkv, int tile) {
    const uint8_t* src = static_cast<const uint8_t*>(p.v) + (int64_t(b) * p.Hkv + hkv) * D * p.v_len_padded + tile * kBlockK;
    TileCopy<D, kChunks>::full(smem, src, p.v_len_padded);
  }

  // Zeroes the accumulator. V^T rows 8dn + lane % 8 + 8 (lane / 16) share the swizzle of lane % 8, so dn only adds
  // an immediate; chunk 2kc + (lane / 8) % 2 leaves one lane offset per kc.
  __device__ __forceinline__ void init(int lane) {
#pragma unroll
    for (int kc = 0; kc < kBlockK / 32; ++kc) v_lane[kc] = swizzled_offset<kChunks>(lane % 8 + 8 * (lane / 16), 2 * kc + (lane / 8) % 2);
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.f;
  }

  __device__ __forceinline__ void rescale(float a0, float a1) {
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) o[dn][0] *= a0, o[dn][1] *= a0, o[dn][2] *= a1, o[dn][3] *= a1;
  }

  __device__ __forceinline__ void accumulate(const float (&s)[8][4], uint32_t smem, const AttentionParams&) {
    constexpr uint32_t kRow8Bytes = 8 * kChunks * 16;  // eight V^T rows
    float part[D / 8][4];
    uint32_t part_h[D / 8][2];
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      part[dn][0] = part[dn][1] = part[dn][2] = part[dn][3] = 0.f;
      part_h[dn][0] = part_h[dn][1] = 0u;
    }
#pragma unroll
    for (int kc = 0; kc < kBlockK / 32; ++kc) {
      const int n = 4 * kc;  // accumulator n-tiles n..n+3 hold keys 32kc..32kc+31
      const uint32_t a[4] = {
          pack_e4m3x4(s[n][0], s[n][1], s[n + 1][0], s[n + 1][1]), pack_e4m3x4(s[n][2], s[n][3], s[n + 1][2], s[n + 1][3]),
          pack_e4m3x4(s[n + 2][0], s[n + 2][1], s[n + 3][0], s[n + 3][1]),
          pack_e4m3x4(s[n + 2][2], s[n + 2][3], s[n + 3][2], s[n + 3][3])};
#pragma unroll
      for (int dn = 0; dn < D / 8; dn += 2) {
        uint32_t vb[4];
        ldmatrix_x4(vb, smem + v_lane[kc] + dn * kRow8Bytes);
        if constexpr (MODE == PvAccum::kF32) {
          mma_e4m3_m16n8k32_f32(o[dn], a, vb[0], vb[1]);
          mma_e4m3_m16n8k32_f32(o[dn + 1], a, vb[2], vb[3]);
        } else if constexpr (MODE == PvAccum::kF32ThenF32) {
          mma_e4m3_m16n8k32_f32(part[dn], a, vb[0], vb[1]);
          mma_e4m3_m16n8k32_f32(part[dn + 1], a, vb[2], vb[3]);
        } else {
          mma_e4m3_m16n8k32_f16(part_h[dn], a, vb[0], vb[1]);
          mma_e4m3_m16n8k32_f16(part_h[dn + 1], a, vb[2], vb[3]);
        }
      }
    }
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      if constexpr (MODE == PvAccum::kF32ThenF32) {
        o[dn][0] += part[dn][0], o[dn][1] += part[dn][1], o[dn][2] += part[dn][2], o[dn][3] += part[dn][3];
      } else if constexpr (MODE == PvAccum::kF8F16ThenF32) {
        const float2 x = Vec16<__half>::to_float2(part_h[dn][0]), y = Vec16<__half>::to_float2(part_h[dn][1]);
        o[dn][0] += x.x, o[dn][1] += x.y, o[dn][2] += y.x, o[dn][3] += y.y;
      }
    }
  }

  __device__ __forceinline__ void to_float(float (&out)[D / 8][4]) const {
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) out[dn][0] = o[dn][0], out[dn][1] = o[dn][1], out[dn][2] = o[dn][2], out[dn][3] = o[dn][3];
  }

  // Undo V's per-channel scale (P's scale cancels against the row sums); add V's mean back to rows that saw a key
  // (smooth_v).
  static __device__ __forceinline__ void finish(float (&out)[D / 8][4], const AttentionParams& p, int b, int hkv, int t,
                                                bool seen0, bool seen1) {
    const int64_t base = (int64_t(b) * p.Hkv + hkv) * D;
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int ch = 8 * dn + 2 * t + c;
        const float sc = p.v_scale[base + ch];
        const float mu = p.v_mean != nullptr ? p.v_mean[base + ch] : 0.f;
        out[dn][c] = out[dn][c] * sc + (seen0 ? mu : 0.f);
        out[dn][c + 2] = out[dn][c + 2] * sc + (seen1 ? mu : 0.f);
      }
    }
  }
};

}  // namespace sage::attn

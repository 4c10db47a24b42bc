// Tile sizes and shared-memory layout of the sm90 attention kernel.
#pragma once

#include <cstdint>

namespace sageattn::sm90 {

template <int kHeadDim_>
struct AttentionTile {
  static constexpr int kHeadDim = kHeadDim_;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dims 64 and 128");
  static constexpr int kConsumers = 2;                 // consumer warpgroups, 64 query rows each
  static constexpr int kBlockM = 64 * kConsumers;      // query rows per CTA
  static constexpr int kBlockN = 64;                   // keys per tile: one K scale group of quant/spec.py
  static constexpr int kThreads = 128 * (kConsumers + 1);  // warpgroup 0 produces
  static constexpr int kStages = kHeadDim == 128 ? 4 : 6;
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;            // 128 * 24 + 256 * 240 = 64K registers
  static constexpr int kQKSwizzle = kHeadDim;          // int8 rows of Q and K are kHeadDim bytes
  static constexpr int kVSwizzle = kBlockN;            // fp8 rows of Vᵀ are kBlockN bytes
  static constexpr int kQBytes = kBlockM * kHeadDim;
  static constexpr int kKBytes = kBlockN * kHeadDim;
  static constexpr int kVBytes = kHeadDim * kBlockN;
  // Offsets from a 1024-byte aligned base (the 128-byte swizzle repeats every 1024 bytes).
  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kQBytes;
  static constexpr int kVOffset = kKOffset + kStages * kKBytes;
  static constexpr int kBarrierOffset = kVOffset + kStages * kVBytes;
  static constexpr int kBarriers = 2 + 3 * kStages;    // q_full, k_full[], v_full[], empty[], q_empty
  static constexpr int kSmemBytes = kBarrierOffset + kBarriers * 8 + 1024;  // + slack to align the base
  static_assert(kKBytes % 1024 == 0 && kVBytes % 1024 == 0 && kQBytes % 1024 == 0, "swizzle-atom aligned tiles");
};

}  // namespace sageattn::sm90

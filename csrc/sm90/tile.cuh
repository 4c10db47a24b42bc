// Tile sizes and shared-memory layout of the sm90 attention kernel.
#pragma once

#include <cstdint>

namespace sageattn::sm90 {

template <int kHeadDim_>
struct AttentionTile {
  static constexpr int kHeadDim = kHeadDim_;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dims 64 and 128");
  // Consumer warpgroups, 64 query rows each. The consumers are latency-bound in their softmax (one warp per
  // scheduler each), so more of them hide more latency; registers allow three at D=64 (160 each), two at D=128.
  static constexpr int kConsumers = kHeadDim == 64 ? 3 : 2;
  static constexpr int kBlockM = 64 * kConsumers;      // query rows per CTA
  // Persistent CTAs claim work tiles from a global counter (attention_kernel.cuh next_work). Measured for the
  // three-consumer tiles (D=64: causal up to 1.4x faster than a fixed stride); with two consumers (D=128) the
  // fixed stride measured 1-4% faster on an H200 and stays.
  static constexpr bool kClaimsWork = kConsumers == 3;
  // Keys per tile: two K scale groups of quant/spec.py (64 keys each). 128 rather than 64 halves the per-key
  // cost of the work done once per tile (output rescale, the two-level add, barriers and waits), which is what
  // kept the 64-key version issue-bound; the per-thread state still fits in 240 registers.
  static constexpr int kBlockN = 128;
  static constexpr int kKScaleKeys = 64;
  static constexpr int kKScaleGroups = kBlockN / kKScaleKeys;
  static constexpr int kThreads = 128 * (kConsumers + 1);  // warpgroup 0 produces
  static constexpr int kStages = kHeadDim == 128 ? 4 : 8;  // a power of two: stage and phase are a mask and a shift
  static_assert((kStages & (kStages - 1)) == 0, "kStages must be a power of two");
  static constexpr int kProducerRegs = 24;
  // 128 * 24 + 256 * 240 or 128 * 24 + 384 * 160 registers: at most 64K
  static constexpr int kConsumerRegs = kConsumers == 2 ? 240 : 160;
  static_assert(128 * kProducerRegs + 128 * kConsumers * kConsumerRegs <= 65536, "register file");
  static constexpr int kQKSwizzle = kHeadDim;          // int8 rows of Q and K are kHeadDim bytes
  static constexpr int kVSwizzle = kBlockN;            // fp8 rows of Vᵀ are kBlockN bytes
  static_assert(kVSwizzle <= 128 && kQKSwizzle <= 128, "a TMA box row must fit the swizzle span");
  static constexpr int kQBytes = kBlockM * kHeadDim;
  static constexpr int kKBytes = kBlockN * kHeadDim;
  static constexpr int kVBytes = kHeadDim * kBlockN;  // what TMA writes into a Vᵀ stage
  // Each Vᵀ stage carries 8 more rows, of e4m3 ones, below its kHeadDim value rows (written once per CTA, never
  // by TMA): a P·V wgmma of N = kHeadDim + 8 then adds each row's sum of P beside P·V, and the softmax's
  // per-score FADD for the row sum goes away (two-level kernels; attention_kernel.cuh kTensorRowSum).
  static constexpr int kSumRows = 8;
  static constexpr int kVStageBytes = (kHeadDim + kSumRows) * kBlockN;
  // Offsets from a 1024-byte aligned base (the 128-byte swizzle repeats every 1024 bytes).
  // Two Q slots at D=64: the producer loads the next work tile's Q while the consumers still finish the current
  // one (with one slot the CTA drains at every work tile: every consumer done, Q's load latency, then the first
  // Q·Kᵀ with nothing to overlap). Measured (H200, same call): D=64 +0.2-1.9%, D=128 -0.3-0.7%, so D=128 keeps one.
  static constexpr int kQSlots = kConsumers == 3 ? 2 : 1;
  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kQSlots * kQBytes;
  static constexpr int kVOffset = kKOffset + kStages * kKBytes;
  static constexpr int kBarrierOffset = kVOffset + kStages * kVStageBytes;
  static constexpr int kBarriers = 3 * kStages + 2 * kQSlots;  // k_full[], v_full[], empty[], q_full[], q_empty[]
  // + the two work index slots (8 bytes), + slack to align the base
  static constexpr int kSmemBytes = kBarrierOffset + (kBarriers + 1) * 8 + 1024;
  static_assert(kKBytes % 1024 == 0 && kVStageBytes % 1024 == 0 && kQBytes % 1024 == 0, "swizzle-atom aligned tiles");
};

}  // namespace sageattn::sm90

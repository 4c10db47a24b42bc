// INT8 Q·Kᵀ / FP8 P·V attention forward for Hopper (sm_90a): a CTA serves work tiles of 128 query rows of
// one (batch, head), one or (persistent grid) several. Warpgroup 0 produces: one thread issues TMA copies of
// the Q tile and of K and Vᵀ tiles (128 keys) into a ring of kStages stages. Warpgroups 1 and 2 consume, 64
// query rows each: wgmma s8 for S = Q·Kᵀ, online softmax in registers, wgmma e4m3 for P·V with P straight
// from registers. Semantics: reference.py with key_tile 128 (Tile::kBlockN), warp_rows 16 and pv "fp8".
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "common/sm90/mbarrier.cuh"
#include "common/sm90/tma.cuh"
#include "common/sm90/wgmma.cuh"
#include "sm90/attention_params.h"
#include "sm90/softmax.cuh"
#include "sm90/tile.cuh"

namespace sageattn::sm90 {

template <class Tile>
struct SharedTiles {
  uint8_t* base;
  __device__ explicit SharedTiles(uint8_t* raw)
      : base(reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t{1023})) {}
  __device__ uint8_t* q(int slot) const { return base + Tile::kQOffset + slot * Tile::kQBytes; }
  __device__ uint8_t* k(int stage) const { return base + Tile::kKOffset + stage * Tile::kKBytes; }
  __device__ uint8_t* v(int stage) const { return base + Tile::kVOffset + stage * Tile::kVStageBytes; }
  __device__ uint8_t* v_ones(int stage) const { return v(stage) + Tile::kVBytes; }  // the row-sum rows
  __device__ uint64_t* barriers() const { return reinterpret_cast<uint64_t*>(base + Tile::kBarrierOffset); }
  __device__ uint64_t* k_full(int stage) const { return barriers() + stage; }
  __device__ uint64_t* v_full(int stage) const { return barriers() + Tile::kStages + stage; }
  __device__ uint64_t* empty(int stage) const { return barriers() + 2 * Tile::kStages + stage; }
  __device__ uint64_t* q_full(int slot) const { return barriers() + 3 * Tile::kStages + slot; }
  __device__ uint64_t* q_empty(int slot) const { return barriers() + 3 * Tile::kStages + Tile::kQSlots + slot; }
  // Two slots, used by alternate rounds: the index a consumer reads and the next one the producer writes never
  // share an address (with one slot, compute-sanitizer racecheck reported that write-after-read as a hazard
  // although the named barriers order it).
  __device__ int* work_slot(int round) const {
    return reinterpret_cast<int*>(barriers() + Tile::kBarriers) + (round & 1);
  }
};

// One unit of work: Tile::kBlockM query rows (64 per consumer warpgroup) of one (batch, head). Work index t runs
// query blocks fastest, so CTAs that run at the same time share one head's K and V in L2; causal blocks run
// heaviest first within a head.
struct WorkTile {
  int m0, head, kv_head, batch, n_tiles;
};

template <class Tile>
__device__ __forceinline__ int query_blocks(const AttentionArgs& args) {
  return (args.len_q + Tile::kBlockM - 1) / Tile::kBlockM;
}

template <class Tile>
__device__ __forceinline__ int total_work(const AttentionArgs& args) {
  return query_blocks<Tile>(args) * args.heads_q * args.batch;
}

// Work tiles past a persistent CTA's first: with Tile::kClaimsWork the producer claims them from a global
// counter (zeroed per call) and hands each index to the consumers (produce), so a CTA that drew light causal
// blocks takes the next one sooner. Otherwise CTAs stride by the grid size. The stride (and a
// zig-zag order tried instead) left causal grids unbalanced whenever the grid size met the query blocks per
// head badly: with 192-row tiles, D=64 causal 4K ran 1.4x and 16K 1.14x longer than with claimed tiles.
template <class Tile>
__device__ __forceinline__ int next_work(const AttentionArgs& args, int t) {
  if constexpr (Tile::kClaimsWork) {
    if (args.work_counter != nullptr) return int(gridDim.x) + atomicAdd(args.work_counter, 1);
  }
  return t + int(gridDim.x);
}

// Key tiles rows [m0, m0 + kBlockM) must visit: all, or with a causal mask up to the last key the last valid
// row sees.
template <class Tile>
__device__ __forceinline__ WorkTile work_tile(const AttentionArgs& args, int t) {
  const int blocks = query_blocks<Tile>(args);
  const int m_index = t % blocks, bh = t / blocks;
  WorkTile w;
  w.m0 = (args.causal ? blocks - 1 - m_index : m_index) * Tile::kBlockM;
  w.head = bh % args.heads_q;
  w.batch = bh / args.heads_q;
  w.kv_head = w.head / (args.heads_q / args.heads_kv);
  int key_end = args.len_k;
  if (args.causal) {
    const int last_row = min(args.len_q, w.m0 + Tile::kBlockM) - 1;
    key_end = max(0, min(args.len_k, last_row + args.causal_offset + 1));
  }
  w.n_tiles = (key_end + Tile::kBlockN - 1) / Tile::kBlockN;
  return w;
}

// The producer thread: for each work tile of this CTA, Q once into its Q slot (after every consumer released the
// slot; with two slots the next tile's Q loads while the consumers finish this one), then K and Vᵀ of every key
// tile into the stage ring. `it` counts key tiles across work tiles; tiles without
// keys (causal rows past the last key) load nothing, their consumers only write the rows.
// kClaimsWork: the producer hands each tile's index (-1: no more work) to the consumers through shared memory
// (work_slot), between two named barriers (published: kWorkFull; read by every consumer: kWorkFree). Otherwise
// both sides walk the same stride.
constexpr int kWorkFull = 14, kWorkFree = 15;  // named barriers; 1..kConsumers take turns on the tensor cores
template <class Tile>
constexpr int kHandoffThreads = 32 + 128 * Tile::kConsumers;  // the producer's warp and every consumer thread

template <class Tile>
__device__ __forceinline__ void load_key_tiles(const SharedTiles<Tile>& smem, const CUtensorMap* tm_k,
                                               const CUtensorMap* tm_v, const WorkTile& w, int& it) {
  for (int j = 0; j < w.n_tiles; ++j, ++it) {
    const int stage = it % Tile::kStages;
    mbarrier_wait(smem.empty(stage), ((it / Tile::kStages) & 1) ^ 1);
    mbarrier_arrive_expect_tx(smem.k_full(stage), Tile::kKBytes);
    tma_load_4d(smem.k(stage), tm_k, smem.k_full(stage), 0, j * Tile::kBlockN, w.kv_head, w.batch);
    mbarrier_arrive_expect_tx(smem.v_full(stage), Tile::kVBytes);
    tma_load_4d(smem.v(stage), tm_v, smem.v_full(stage), j * Tile::kBlockN, 0, w.kv_head, w.batch);
  }
}

template <class Tile>
__device__ __forceinline__ void produce(const SharedTiles<Tile>& smem, const AttentionArgs& args,
                                        const CUtensorMap* tm_q, const CUtensorMap* tm_k, const CUtensorMap* tm_v) {
  constexpr int kHandoff = kHandoffThreads<Tile>;
  int it = 0, q_round = 0;
  for (int t = blockIdx.x, round = 0;; ++round) {
    const bool done = t >= total_work<Tile>(args);
    if constexpr (Tile::kClaimsWork) {
      if (round > 0) named_barrier_sync_one_thread(kWorkFree, kHandoff);
      *smem.work_slot(round) = done ? -1 : t;
      named_barrier_arrive_one_thread(kWorkFull, kHandoff);
    }
    if (done) return;
    const WorkTile w = work_tile<Tile>(args, t);
    t = next_work<Tile>(args, t);  // claimed now: the atomic's round trip hides behind this tile's loads
    if (w.n_tiles == 0) continue;
    const unsigned slot = static_cast<unsigned>(q_round) % Tile::kQSlots;
    mbarrier_wait(smem.q_empty(slot), ((static_cast<unsigned>(q_round) / Tile::kQSlots) & 1) ^ 1);
    mbarrier_arrive_expect_tx(smem.q_full(slot), Tile::kQBytes);
    tma_load_4d(smem.q(slot), tm_q, smem.q_full(slot), 0, w.m0, w.head, w.batch);
    load_key_tiles(smem, tm_k, tm_v, w, it);
    ++q_round;
  }
}

__device__ __forceinline__ void store_pair(void* row_ptr, int col, float x, float y, bool bf16) {
  if (bf16) {
    reinterpret_cast<__nv_bfloat162*>(row_ptr)[col / 2] = __floats2bfloat162_rn(x, y);
  } else {
    reinterpret_cast<__half2*>(row_ptr)[col / 2] = __floats2half2_rn(x, y);
  }
}

// One consumer warpgroup's share (64 rows) of one work tile. `it` counts key tiles consumed before this one,
// `q_round` work tiles with keys (phases of the Q barriers).
template <class Tile, bool kPerThread, bool kTwoLevel, bool kPingPong>
__device__ __forceinline__ void consume_tile(const SharedTiles<Tile>& smem, const AttentionArgs& args, int consumer,
                                             const WorkTile& w, int it, int q_round) {
  constexpr int D = Tile::kHeadDim, N = Tile::kBlockN, kGroups = Tile::kKScaleGroups;
  const int m0 = w.m0, head = w.head, kv_head = w.kv_head, batch = w.batch, n_tiles = w.n_tiles;
  static_assert(127 * 127 * D < (1 << 22), "Q·Kᵀ sums must fit small_int_to_float");
  // Read from lane 0: ptxas then knows it is warp-uniform, and so are the rows, the masked-tile test and the
  // stage arithmetic that follow from it (uniform registers and branches, no divergence handling in the loop).
  const int warp = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / 32) % 4, 0);
  const int lane = threadIdx.x % 32;
  const int row_base = m0 + 64 * consumer + 16 * warp;  // first of this warp's 16 rows
  auto row_of = [&](int r) { return row_base + lane / 4 + 8 * r; };  // the thread's two rows

  // Scales (quant/spec.py with warp_rows 16): Q one per thread, K one per thread and 64-key group.
  const int q_group = kPerThread ? (row_base / 16) * 8 + lane / 4 : row_base / 16;
  const float q_scale = row_base < args.len_q
                            ? args.q_scale[(int64_t(batch) * args.heads_q + head) * args.q_groups + q_group] *
                                  args.qk_scale
                            : 0.f;
  const float* k_scale = args.k_scale + (int64_t(batch) * args.heads_kv + kv_head) * args.k_groups;

  // The last key each of the thread's rows may see; computed where a masked tile needs it (registers).
  auto key_limits = [&](int (&limit)[2]) {
    for (int r = 0; r < 2; ++r) {
      limit[r] = args.causal ? min(args.len_k - 1, row_of(r) + args.causal_offset) : args.len_k - 1;
    }
  };
  // Tiles reaching past this key may hold keys some row of this warp must not see.
  int first_masked_key = args.causal ? min(args.len_k, row_base + args.causal_offset + 1) : args.len_k;
  // Unmasked tiles' one-FFMA exponent is exact enough only below a scale bound (fast_exponent_is_safe). A warp
  // whose largest Q scale times its head's largest K scale passes it (extreme inputs: fp16 values in the
  // hundreds) sends every tile down the masked path, which is safe at any magnitude. Decided once per work
  // tile, so the hot loop is unchanged: one coalesced pass over the head's K scales (N/16 floats at most).
  {
    float k_scale_max = 0.f;
    for (int i = lane; i < args.k_groups; i += 32) k_scale_max = fmaxf(k_scale_max, __ldg(k_scale + i));
    // scales are >= 0, where float order is the order of the bit patterns
    const float q_max = __uint_as_float(__reduce_max_sync(0xffffffffu, __float_as_uint(q_scale)));
    const float k_max = __uint_as_float(__reduce_max_sync(0xffffffffu, __float_as_uint(k_scale_max)));
    if (!fast_exponent_is_safe<D>(q_max * k_max)) first_masked_key = 0;
  }

  // Ping-pong schedule only: overlapping the softmax with the warpgroup's own P·V keeps P, the P·V
  // accumulator, o and the new scores live at once: 240 registers hold that at D=64 or with one accumulator,
  // not with two at D=128, nor in 160 registers (three consumers). Folding inside the softmax keeps the partial
  // sum live through it: only with 240 registers.
  constexpr bool kSoftmaxOverPV = kPingPong && (!kTwoLevel || D == 64) && Tile::kConsumerRegs >= 240;
  constexpr bool kFoldInSoftmax = Tile::kConsumerRegs >= 240;
  // Two-level: each tile's row sums of P come from the tensor cores, in the P·V partial's last 8 columns (the
  // ones rows under Vᵀ), and are folded with it; the single-level accumulator would carry them across all
  // tiles in the FP8 wgmma's reduced precision, which drifted past 2.5% at 4K keys (NOTES v4), so it keeps
  // the FADDs.
  constexpr bool kTensorRowSum = kTwoLevel;
  constexpr int kPartial = kTensorRowSum ? (D + Tile::kSumRows) / 2 : D / 2;
  float o[D / 2];
  float partial[kPartial];
  int32_t s_acc[N / 2];
  float p_tile[N / 2];
  uint32_t p[N / 32][4];
  float rescale[2] = {1.f, 1.f};       // of the tile whose softmax ran last
  float rescale_prev[2] = {1.f, 1.f};  // of the tile whose P·V is in flight
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
#pragma unroll
  for (int i = 0; i < kPartial; ++i) partial[i] = 0.f;
#pragma unroll
  for (int i = 0; i < N / 2; ++i) s_acc[i] = 0;
  RowState state;

  const unsigned q_slot = static_cast<unsigned>(q_round) % Tile::kQSlots;
  if (n_tiles > 0) mbarrier_wait(smem.q_full(q_slot), (static_cast<unsigned>(q_round) / Tile::kQSlots) & 1);
  const uint64_t desc_q = make_smem_desc<Tile::kQKSwizzle>(smem_u32(smem.q(q_slot) + 64 * consumer * D));
  // Stage and mbarrier phase of key tile j: unsigned, so % and / by the power-of-two stage count are a mask and
  // a shift; descriptors of a stage are the stage-0 descriptor advanced by whole tiles (no 64-bit rebuilds).
  auto stage_of = [it](int j) { return static_cast<uint32_t>(it + j) % Tile::kStages; };
  auto parity_of = [it](int j) { return (static_cast<uint32_t>(it + j) / Tile::kStages) & 1u; };
  const uint64_t desc_k0 = make_smem_desc<Tile::kQKSwizzle>(smem_u32(smem.k(0)));
  const uint64_t desc_v0 = make_smem_desc<Tile::kVSwizzle>(smem_u32(smem.v(0)));

  // o *= factor per row; skipped when no row of the warp moved its max (a factor of exactly 1), which late
  // in long rows is most tiles.
  auto rescale_output = [&](const float (&factor)[2]) {
    if (__any_sync(0xffffffffu, factor[0] != 1.f || factor[1] != 1.f)) {
#pragma unroll
      for (int i = 0; i < D / 2; ++i) o[i] *= factor[(i / 2) % 2];
    }
  };
  // S = Q·Kᵀ of tile j into s_acc (one commit group).
  // `ready`: a probe (probe_next) already saw the tile's data land, so the blocking wait is skipped.
  auto issue_qk = [&](int j, bool ready) {
    if (!ready) mbarrier_wait(smem.k_full(stage_of(j)), parity_of(j));
    const uint64_t desc_k = desc_advance(desc_k0, stage_of(j) * Tile::kKBytes);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 32; ++kk) {
      WgmmaS8<N>::ss(s_acc, desc_advance(desc_q, 32 * kk), desc_advance(desc_k, 32 * kk), kk > 0);
    }
    wgmma_commit();
  };
  // K scales of tile j, loaded one tile ahead so the global load's latency hides behind a whole iteration.
  // Per-thread granularity: 4 scales per 64-key group (k_groups = 4 x groups), the thread's at lane % 4. The
  // group index is warp-uniform, so each load is a uniform offset from this thread's base pointer.
  float k_scale_next[kGroups];
  constexpr int kScalesPerGroup = kPerThread ? 4 : 1;
  const float* k_scale_lane = k_scale + (kPerThread ? lane % 4 : 0);
  const int last_group = args.k_groups / kScalesPerGroup - 1;
  auto load_k_scales = [&](int j) {
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      // past the last group only in tail tiles, whose keys are all masked: any finite scale does
      const unsigned group = min(j * kGroups + g, last_group);  // unsigned: a zero-extended offset
      k_scale_next[g] = __ldg(k_scale_lane + group * kScalesPerGroup);
    }
  };
  load_k_scales(0);
  // Whether the K and Vᵀ the next turn issues (K of j+1, Vᵀ of j) have landed, asked at the top of the softmax
  // of j (both probes, combined without a branch) so the round trip hides behind it; the turn then skips its
  // blocking waits (ncu: those waits were ~4% of the consumers' stall samples though the producer runs ahead).
  bool next_ready = false;
  auto probe_next = [&](int j) {
    const int jk = min(j + 1, n_tiles - 1);  // past the last tile: K of j, long since landed
    next_ready = __all_sync(0xffffffffu, mbarrier_test_wait(smem.v_full(stage_of(j)), parity_of(j)) &
                                             mbarrier_test_wait(smem.k_full(stage_of(jk)), parity_of(jk)));
  };
  // "fp32+fp32": o = o * factor + the partial sum of the tile whose P·V just landed. Unconditional (no vote
  // to skip factors of 1), so it can sit in one basic block with the softmax and fill its latency gaps.
  // The factor is that of the tile whose P·V is folded: `rescale` until the next softmax overwrites it. The
  // order that overlaps the softmax with P·V folds after that, and folding inside the softmax would tie the
  // fold's schedule to the new factor's register: both read the copy in rescale_prev.
  auto fold = [&]() {
    if constexpr (kTwoLevel) {
      constexpr bool kPrev = kSoftmaxOverPV || kFoldInSoftmax;
      const float f0 = kPrev ? rescale_prev[0] : rescale[0];
      const float f1 = kPrev ? rescale_prev[1] : rescale[1];
#pragma unroll
      for (int i = 0; i < D / 2; ++i) o[i] = fmaf(o[i], (i / 2) % 2 ? f1 : f0, partial[i]);
      if constexpr (kTensorRowSum) {  // column D of the partial: row r's sum; D + 2 (register D/2 + 2): row r + 8
        state.sum[0] = fmaf(state.sum[0], f0, partial[D / 2]);
        state.sum[1] = fmaf(state.sum[1], f1, partial[D / 2 + 2]);
      }
    }
  };
  // After S of tile j has landed: dequantize, mask, online softmax into p_tile. fold_first: fold the previous
  // tile's P·V first; pack: pack P into the P·V operand registers (free only once the previous P·V retired).
  // Both are inside each branch, so ptxas interleaves their FFMAs and conversions with the exponentials, whose
  // issue has idle slots (ncu: fixed-latency waits are a third of the softmax's stall samples).
  auto softmax = [&](int j, auto fold_first, auto pack) {
    // kProbe: also probe the next turn's K and Vᵀ (probe_next), inside each branch.
    constexpr bool kProbe = kPingPong;
    fence_registers(s_acc);
    float scale[kGroups];
#pragma unroll
    for (int g = 0; g < kGroups; ++g) scale[g] = q_scale * k_scale_next[g];
    load_k_scales(j + 1);
    const int key0 = j * N;
    if (key0 + N > first_masked_key) {
      if constexpr (kProbe) probe_next(j);
      if constexpr (decltype(fold_first)::value) fold();
      int key_limit[2];
      key_limits(key_limit);
      online_softmax<N, true, !kTensorRowSum>(s_acc, scale, key0, lane, key_limit, state, rescale, p_tile);
      if constexpr (decltype(pack)::value) pack_p_fragments<N>(p_tile, p);
    } else {
      if constexpr (kProbe) probe_next(j);
      if constexpr (decltype(fold_first)::value) fold();
      const int no_limit[2] = {0, 0};  // unmasked tiles read no limit
      online_softmax<N, false, !kTensorRowSum>(s_acc, scale, key0, lane, no_limit, state, rescale, p_tile);
      if constexpr (decltype(pack)::value) pack_p_fragments<N>(p_tile, p);
    }
  };
  using Yes = std::true_type;
  using No = std::false_type;
  // O (+)= P·V of tile j (one commit group). "fp32": the running o takes the tile directly, rescaled first.
  auto issue_pv = [&](int j, bool ready) {
    if constexpr (!kTwoLevel) rescale_output(rescale_prev);
    if (!ready) mbarrier_wait(smem.v_full(stage_of(j)), parity_of(j));
    const uint64_t desc_v = desc_advance(desc_v0, stage_of(j) * Tile::kVStageBytes);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < N / 32; ++kk) {
      if constexpr (kTwoLevel) {
        WgmmaE4m3<2 * kPartial>::rs(partial, p[kk], desc_advance(desc_v, 32 * kk), kk > 0);
      } else {
        WgmmaE4m3<D>::rs(o, p[kk], desc_advance(desc_v, 32 * kk), 1);
      }
    }
    wgmma_commit();
  };
  // After P·V of tile j has landed: free its stage.
  auto release_pv = [&](int j) {
    fence_registers(p);  // the wgmma read P from these registers until now: keep them from being reused
    if constexpr (kTwoLevel) {
      fence_registers(partial);
    } else {
      fence_registers(o);
    }
    __syncwarp();
    if (lane == 0) mbarrier_arrive(smem.empty(stage_of(j)));  // this warp is done with K and Vᵀ of the stage
  };
  auto finish_pv = [&](int j) {
    release_pv(j);
    fold();
  };
  // The tile whose softmax just ran becomes the next P·V's operand (kPacked: softmax already wrote P).
  auto stage_p = [&](auto packed) {
    if constexpr (!decltype(packed)::value) pack_p_fragments<N>(p_tile, p);
    rescale_prev[0] = rescale[0];
    rescale_prev[1] = rescale[1];
  };

  if constexpr (kPingPong) {
    // The consumer warpgroups take turns on the tensor cores: one issues Q·Kᵀ of tile j and P·V of tile j-1
    // while the others run their softmax; inside a warpgroup, where registers allow, the softmax of tile j
    // overlaps its own P·V of j-1 (Q·Kᵀ issued first, so it retires first). Turns go round: named barrier
    // 1 + c means "consumer c may issue", consumer c opens the next one's, consumer 0 starts. Prologue and
    // epilogue are peeled so the steady-state body has no branches around its wgmma waits (ptxas otherwise
    // cannot prove which group a wait retires and inserts a full wait).
    constexpr int kLast = Tile::kConsumers - 1;
    const int my_turn = 1 + consumer;
    const int other_turn = kLast == 1 ? 2 - consumer : 1 + (consumer == kLast ? 0 : consumer + 1);
    if (n_tiles > 0) {
      if (consumer == kLast) named_barrier_arrive(1, 256);
      named_barrier_sync(my_turn, 256);
      issue_qk(0, false);
      named_barrier_arrive(other_turn, 256);
      wgmma_wait<0>();
      softmax(0, No{}, No{});
      stage_p(No{});
      for (int j = 1; j < n_tiles; ++j) {
        named_barrier_sync(my_turn, 256);
        const bool ready = next_ready;
        if constexpr (kSoftmaxOverPV) {
          issue_qk(j, ready);
          issue_pv(j - 1, ready);
          named_barrier_arrive(other_turn, 256);
          wgmma_wait<1>();  // groups retire in order: Q·Kᵀ of j is done, P·V of j-1 may still run
          softmax(j, No{}, No{});
          wgmma_wait<0>();
          finish_pv(j - 1);
          stage_p(No{});
        } else if constexpr (kFoldInSoftmax) {
          issue_pv(j - 1, ready);
          issue_qk(j, ready);
          named_barrier_arrive(other_turn, 256);
          wgmma_wait<1>();  // P·V of j-1 is done, Q·Kᵀ of j may still run
          release_pv(j - 1);
          wgmma_wait<0>();
          softmax(j, Yes{}, Yes{});  // folds P·V of j-1, then packs P of j into the registers it read
          stage_p(Yes{});
        } else {
          // 160 registers (three consumers): P·V of j-1 lands and is folded before Q·Kᵀ of j is issued, so P
          // and the partial sum are dead before the scores are born.
          issue_pv(j - 1, ready);
          wgmma_wait<0>();
          finish_pv(j - 1);
          issue_qk(j, ready);
          named_barrier_arrive(other_turn, 256);
          wgmma_wait<0>();
          softmax(j, No{}, Yes{});  // P packed in the softmax's block: its conversions merge halves (no PRMT)
          stage_p(Yes{});
        }
      }
      named_barrier_sync(my_turn, 256);
      issue_pv(n_tiles - 1, next_ready);
      if (consumer != kLast) named_barrier_arrive(other_turn, 256);  // the last consumer's last turn opens none
      wgmma_wait<0>();
      finish_pv(n_tiles - 1);
    }
  } else {
    for (int j = 0; j < n_tiles; ++j) {
      issue_qk(j, false);
      wgmma_wait<0>();
      softmax(j, No{}, No{});
      stage_p(No{});
      issue_pv(j, false);
      wgmma_wait<0>();
      finish_pv(j);
    }
  }
  // Every Q·Kᵀ of this warp has completed: the producer may load the next Q.
  if (n_tiles > 0) {
    __syncwarp();
    if (lane == 0) mbarrier_arrive(smem.q_empty(q_slot));
  }

  // Epilogue: O = acc * scale_v / sum(p * 448) (+ mean V); rows that saw no key give 0 and LSE -inf.
  const int64_t v_head = (int64_t(batch) * args.heads_kv + kv_head) * D;
  const float* v_scale = args.v_scale + v_head;
  const float* v_mean = args.v_mean != nullptr ? args.v_mean + v_head : nullptr;
  uint8_t* out_head = static_cast<uint8_t*>(args.out) +
                      (int64_t(batch) * args.out_stride_b + int64_t(head) * args.out_stride_h) * 2;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    // tensor-core sums: every lane of the quad holds the whole row's (its ones columns are alike)
    const float sum = kTensorRowSum ? state.sum[r] : quad_sum(state.sum[r]);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int row = row_of(r);
    if (row >= args.len_q) continue;
    void* out_row = out_head + int64_t(row) * args.out_stride_l * 2;
#pragma unroll
    for (int b = 0; b < D / 8; ++b) {
      const int col = 8 * b + 2 * (lane % 4);
      const float2 vs = *reinterpret_cast<const float2*>(v_scale + col);
      float x = o[4 * b + 2 * r] * inv * vs.x;
      float y = o[4 * b + 2 * r + 1] * inv * vs.y;
      if (v_mean != nullptr && sum > 0.f) {
        const float2 vm = *reinterpret_cast<const float2*>(v_mean + col);
        x += vm.x;
        y += vm.y;
      }
      store_pair(out_row, col, x, y, args.out_bf16);
    }
    if (args.lse != nullptr && lane % 4 == 0) {
      const float lse2 = sum > 0.f ? state.max[r] + __log2f(sum) - kLog2FP8PScale : -INFINITY;
      args.lse[(int64_t(batch) * args.heads_q + head) * args.len_q + row] = lse2 * 0.6931471805599453f;
    }
  }
}

template <int kHeadDim, bool kPerThread, bool kTwoLevel, bool kPingPong>
__global__ void __launch_bounds__(AttentionTile<kHeadDim>::kThreads, 1)
    attention_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                     const __grid_constant__ CUtensorMap tm_v, const AttentionArgs args) {
  using Tile = AttentionTile<kHeadDim>;
  extern __shared__ uint8_t smem_raw[];
  const SharedTiles<Tile> smem(smem_raw);

  if (threadIdx.x == 0) {
    tma_prefetch_descriptor(&tm_q);
    tma_prefetch_descriptor(&tm_k);
    tma_prefetch_descriptor(&tm_v);
    for (int slot = 0; slot < Tile::kQSlots; ++slot) {
      mbarrier_init(smem.q_full(slot), 1);
      mbarrier_init(smem.q_empty(slot), 4 * Tile::kConsumers);  // one arrival per consumer warp
    }
    for (int s = 0; s < Tile::kStages; ++s) {
      mbarrier_init(smem.k_full(s), 1);
      mbarrier_init(smem.v_full(s), 1);
      mbarrier_init(smem.empty(s), 4 * Tile::kConsumers);
    }
    mbarrier_init_fence();
  }
  if constexpr (kTwoLevel) {  // the ones rows under every Vᵀ stage (kTensorRowSum)
    constexpr int kWords = Tile::kSumRows * Tile::kBlockN / 4;
    for (int i = threadIdx.x; i < Tile::kStages * kWords; i += Tile::kThreads) {
      reinterpret_cast<uint32_t*>(smem.v_ones(i / kWords))[i % kWords] = 0x38383838u;  // e4m3 1.0 (any swizzle)
    }
    fence_proxy_async_shared();  // written through the generic proxy, read by wgmma
  }
  __syncthreads();

  // A grid of total_work CTAs runs one work tile each; a smaller (persistent) grid claims them (next_work).
  const int warpgroup = warpgroup_index();
  if (warpgroup == 0) {
    setmaxnreg_dec<Tile::kProducerRegs>();
    if (threadIdx.x == 0) produce(smem, args, &tm_q, &tm_k, &tm_v);
  } else {
    setmaxnreg_inc<Tile::kConsumerRegs>();
    int it = 0, q_round = 0;
    for (int t = blockIdx.x, round = 0;; t += Tile::kClaimsWork ? 0 : gridDim.x, ++round) {
      if constexpr (Tile::kClaimsWork) {  // the producer's index
        constexpr int kHandoff = kHandoffThreads<Tile>;
        named_barrier_sync(kWorkFull, kHandoff);
        // Every lane reads the same index; a warp reduction (REDUX, into a uniform register) lets ptxas keep it
        // and what it decodes to (head, rows, tile count) in uniform registers, as it does for blockIdx.x.
        t = static_cast<int>(__reduce_or_sync(0xffffffffu, static_cast<unsigned>(*smem.work_slot(round))));
        if (t < 0) break;
        named_barrier_arrive(kWorkFree, kHandoff);
      } else if (t >= total_work<Tile>(args)) {
        break;
      }
      const WorkTile w = work_tile<Tile>(args, t);
      consume_tile<Tile, kPerThread, kTwoLevel, kPingPong>(smem, args, warpgroup - 1, w, it, q_round);
      it += w.n_tiles;
      q_round += w.n_tiles > 0;
    }
  }
}

}  // namespace sageattn::sm90

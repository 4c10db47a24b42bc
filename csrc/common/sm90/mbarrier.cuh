// Shared-memory transaction barriers (mbarrier): the completion signal of TMA copies and the
// "stage free" signal from consumers back to the producer. Torch-free.
#pragma once

#include "common/sm90/arch.cuh"

namespace sageattn::sm90 {

__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(arrivals) : "memory");
}

// Makes initialised barriers visible to the async proxy (TMA) and to other threads; follow with a CTA barrier.
__device__ __forceinline__ void mbarrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

// One arrival plus the number of bytes the copies signalling this barrier will deliver in this phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes)
               : "memory");
}

// The phase test both probes share, as PTX: %0 = 1 once the phase with parity %2 of the barrier at %1 has
// completed. `op` is try_wait (may suspend the thread a while before answering no) or test_wait (answers now).
#define SAGEATTN_MBARRIER_PHASE_TEST(op) \
  "{\n.reg .pred p;\nmbarrier." op ".parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"

// True once the phase with parity `parity` has completed (a fresh barrier counts its "previous" phase,
// parity 1, as complete, which lets producers pass their first wait on empty stages).
__device__ __forceinline__ bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile(SAGEATTN_MBARRIER_PHASE_TEST("try_wait") : "=r"(done) : "r"(smem_u32(bar)), "r"(parity) : "memory");
  return done != 0;
}

// Non-blocking probe of the same phase: its answer comes back with the latency of a shared-memory round trip,
// so a caller that asks well before it needs the data hides that latency (and waits only when told "not yet").
__device__ __forceinline__ bool mbarrier_test_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile(SAGEATTN_MBARRIER_PHASE_TEST("test_wait") : "=r"(done) : "r"(smem_u32(bar)), "r"(parity) : "memory");
  return done != 0;
}

__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  while (!mbarrier_try_wait(bar, parity)) {
  }
}

}  // namespace sageattn::sm90

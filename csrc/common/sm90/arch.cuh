// Guard and small warpgroup utilities for Hopper (sm_90a) device code. Torch-free.
#pragma once

#include <cstdint>

// wgmma and setmaxnreg exist only on the arch-specific sm_90a target; a plain sm_90 (or any other) device
// pass must fail here instead of deep inside an asm block.
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "csrc/common/sm90 needs the sm_90a target: -gencode=arch=compute_90a,code=sm_90a"
#endif

namespace sageattn::sm90 {

__device__ __forceinline__ uint32_t smem_u32(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

// Index of this thread's warpgroup (4 consecutive warps), uniform across the warpgroup.
__device__ __forceinline__ int warpgroup_index() {
  return __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
}

// Registers per thread for the rest of this warpgroup's life. Needs a register cap at kernel entry
// (__launch_bounds__(threads, 1)); ptxas warns (C7508) when it cannot honour it.
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(kRegs % 8 == 0 && kRegs >= 24 && kRegs <= 256, "setmaxnreg takes a multiple of 8 in [24, 256]");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(kRegs % 8 == 0 && kRegs >= 24 && kRegs <= 256, "setmaxnreg takes a multiple of 8 in [24, 256]");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// Barrier among `threads` threads (a multiple of 32) on hardware barrier `id` (1..15; 0 is __syncthreads).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// The same from one thread of a warp whose other threads have exited (non-aligned forms: the warp counts as
// arrived once its non-exited threads have).
__device__ __forceinline__ void named_barrier_sync_one_thread(int id, int threads) {
  asm volatile("barrier.cta.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void named_barrier_arrive_one_thread(int id, int threads) {
  asm volatile("barrier.cta.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Makes this thread's earlier generic-proxy writes to shared memory visible to async-proxy readers (wgmma
// operands, TMA stores); a barrier must still order them with the readers.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

}  // namespace sageattn::sm90

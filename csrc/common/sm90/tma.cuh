// Bulk tensor copies (TMA), global -> shared, completing on an mbarrier. Torch-free.
// The CUtensorMap comes from tma_host.h and reaches the kernel by value as a __grid_constant__ parameter.
#pragma once

#include <cuda.h>

#include "common/sm90/arch.cuh"

namespace sageattn::sm90 {

__device__ __forceinline__ void tma_prefetch_descriptor(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Copies the box at coordinates (c0 innermost .. c3) of a 4-D tensor map into `dst`; the bytes count
// toward `bar`'s expected transaction count. Out-of-bounds elements arrive as zeros.
__device__ __forceinline__ void tma_load_4d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1, int c2,
                                            int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

}  // namespace sageattn::sm90

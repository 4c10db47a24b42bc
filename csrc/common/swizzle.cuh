// Shared-memory tile addressing with an XOR swizzle of 16-byte chunks, so that ldmatrix (8 rows, same chunk
// column) and row-wise cp.async stores both hit 8 distinct bank groups. Torch-free.
#pragma once
#include <cstdint>

namespace sage {

// Byte offset of 16-byte chunk `chunk` of row `row` in a tile whose rows hold CHUNKS chunks (4, 8 or 16).
// Rows of 128 bytes or more: XOR the low 3 chunk bits with row % 8. Rows of 64 bytes: two rows share one
// 128-byte line, so XOR with (row / 2) % 4.
template <int CHUNKS>
__device__ __forceinline__ uint32_t swizzled_offset(int row, int chunk) {
  static_assert(CHUNKS == 4 || CHUNKS % 8 == 0, "tile rows must be 64 bytes or a multiple of 128 bytes");
  int phys;
  if constexpr (CHUNKS == 4) {
    phys = chunk ^ ((row >> 1) & 3);
  } else {
    phys = (chunk & ~7) | ((chunk ^ row) & 7);
  }
  return static_cast<uint32_t>((row * CHUNKS + phys) * 16);
}

}  // namespace sage

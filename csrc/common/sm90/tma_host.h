// Host side of TMA: encodes 4-D tiled tensor maps through the driver entry point that the CUDA runtime
// hands out, so the module needs no -lcuda link. Torch-free; returns an error text instead of throwing.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace sageattn::sm90 {

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

inline EncodeTiledFn encode_tiled_fn() {
  static EncodeTiledFn fn = [] {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult status{};
#if CUDART_VERSION >= 12050
    cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &status);
#else
    cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &ptr, cudaEnableDefault, &status);
#endif
    return status == cudaDriverEntryPointSuccess ? reinterpret_cast<EncodeTiledFn>(ptr) : nullptr;
  }();
  return fn;
}

// A byte tensor (int8 or fp8 codes) seen as 4-D: dims innermost first, strides in bytes of dims 1..3.
struct ByteTensor4d {
  const void* data;
  uint64_t dims[4];
  uint64_t strides[3];
};

// swizzle_bytes: 0, 32, 64 or 128; box_inner * 1 byte must not exceed it when swizzling.
inline std::string encode_tiled_4d(CUtensorMap* map, const ByteTensor4d& t, uint32_t box_inner, uint32_t box_rows,
                                   int swizzle_bytes) {
  EncodeTiledFn encode = encode_tiled_fn();
  if (encode == nullptr) return "cuTensorMapEncodeTiled is not available from the CUDA driver";
  if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0) return "TMA needs a 16-byte aligned base address";
  for (uint64_t s : t.strides) {
    if (s % 16 != 0) return "TMA needs strides that are multiples of 16 bytes";
  }
  // The driver describes each dimension as nested in the next (stride[i+1] >= stride[i] * dim[i+1]).
  if (t.strides[0] < t.dims[0] || t.strides[1] < t.strides[0] * t.dims[1] || t.strides[2] < t.strides[1] * t.dims[2]) {
    return "TMA needs dimensions nested innermost first (e.g. a contiguous [B, H, L, D] tensor)";
  }
  CUtensorMapSwizzle swizzle = swizzle_bytes == 128  ? CU_TENSOR_MAP_SWIZZLE_128B
                               : swizzle_bytes == 64 ? CU_TENSOR_MAP_SWIZZLE_64B
                               : swizzle_bytes == 32 ? CU_TENSOR_MAP_SWIZZLE_32B
                                                     : CU_TENSOR_MAP_SWIZZLE_NONE;
  cuuint64_t dims[4] = {t.dims[0], t.dims[1], t.dims[2], t.dims[3]};
  cuuint64_t strides[3] = {t.strides[0], t.strides[1], t.strides[2]};
  cuuint32_t box[4] = {box_inner, box_rows, 1, 1};
  cuuint32_t unit[4] = {1, 1, 1, 1};
  CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, const_cast<void*>(t.data), dims, strides, box, unit,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? std::string() : "cuTensorMapEncodeTiled failed with CUresult " + std::to_string(r);
}

}  // namespace sageattn::sm90

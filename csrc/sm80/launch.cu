// sm80 launcher: (head dim, output type, accumulation) -> one attention_kernel<ValueFp16> instance.
#include <type_traits>

#include "sm80/launch.h"
#include "sm80/launch_template.cuh"
#include "sm80/value_fp16.cuh"

namespace sage::attn {

cudaError_t launch_sm80(const AttentionParams& p, int head_dim, OutType out, PvAccum mode, cudaStream_t stream) {
  return with_head_dim(head_dim, [&](auto d) -> cudaError_t {
    constexpr int D = decltype(d)::value;
    if (out == OutType::kBf16) return launch_attention<D, __nv_bfloat16, ValueFp16<D, __nv_bfloat16, PvAccum::kF32>>(p, stream);
    switch (mode) {
      case PvAccum::kF32: return launch_attention<D, __half, ValueFp16<D, __half, PvAccum::kF32>>(p, stream);
      case PvAccum::kF16ThenF32: return launch_attention<D, __half, ValueFp16<D, __half, PvAccum::kF16ThenF32>>(p, stream);
      case PvAccum::kF16: return launch_attention<D, __half, ValueFp16<D, __half, PvAccum::kF16>>(p, stream);
      default: return cudaErrorInvalidValue;
    }
  });
}

}  // namespace sage::attn

// sm89 launcher: (head dim, output type, accumulation) -> one attention_kernel<ValueFp8> instance.
#include <type_traits>

#include "sm80/launch_template.cuh"
#include "sm89/launch.h"
#include "sm89/value_fp8.cuh"

namespace sage::attn {

bool fp8_f16_accum_built() { return SAGE_HAS_FP8_F16_ACCUM != 0; }

template <int D, typename OutT>
static cudaError_t launch_mode(const AttentionParams& p, PvAccum mode, cudaStream_t stream) {
  switch (mode) {
    case PvAccum::kF32: return launch_attention<D, OutT, ValueFp8<D, PvAccum::kF32>>(p, stream);
    case PvAccum::kF32ThenF32: return launch_attention<D, OutT, ValueFp8<D, PvAccum::kF32ThenF32>>(p, stream);
#if SAGE_HAS_FP8_F16_ACCUM
    case PvAccum::kF8F16ThenF32: return launch_attention<D, OutT, ValueFp8<D, PvAccum::kF8F16ThenF32>>(p, stream);
#endif
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_sm89(const AttentionParams& p, int head_dim, OutType out, PvAccum mode, cudaStream_t stream) {
  return with_head_dim(head_dim, [&](auto d) -> cudaError_t {
    constexpr int D = decltype(d)::value;
    return out == OutType::kBf16 ? launch_mode<D, __nv_bfloat16>(p, mode, stream) : launch_mode<D, __half>(p, mode, stream);
  });
}

}  // namespace sage::attn

// The sm80 launch for one head dim; explicitly instantiated once per head dim (launch_d64.cu, launch_d128.cu).
#pragma once
#include "sm80/launch.h"

namespace sage::attn {

template <int D>
cudaError_t launch_sm80_d(const AttentionParams& p, OutType out, PvAccum mode, cudaStream_t stream);

extern template cudaError_t launch_sm80_d<64>(const AttentionParams&, OutType, PvAccum, cudaStream_t);
extern template cudaError_t launch_sm80_d<128>(const AttentionParams&, OutType, PvAccum, cudaStream_t);

}  // namespace sage::attn

#ifdef SAGE_SM80_INSTANTIATE
#include "sm80/launch_template.cuh"
#include "sm80/value_fp16.cuh"

namespace sage::attn {

template <int D>
cudaError_t launch_sm80_d(const AttentionParams& p, OutType out, PvAccum mode, cudaStream_t stream) {
  if (out == OutType::kBf16) return launch_attention<D, __nv_bfloat16, ValueFp16<D, __nv_bfloat16, PvAccum::kF32>>(p, stream);
  switch (mode) {
    case PvAccum::kF32: return launch_attention<D, __half, ValueFp16<D, __half, PvAccum::kF32>>(p, stream);
    case PvAccum::kF16ThenF32: return launch_attention<D, __half, ValueFp16<D, __half, PvAccum::kF16ThenF32>>(p, stream);
    case PvAccum::kF16: return launch_attention<D, __half, ValueFp16<D, __half, PvAccum::kF16>>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

template cudaError_t launch_sm80_d<SAGE_SM80_INSTANTIATE>(const AttentionParams&, OutType, PvAccum, cudaStream_t);

}  // namespace sage::attn
#endif

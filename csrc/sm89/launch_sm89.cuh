// The sm89 launch for one head dim; explicitly instantiated once per head dim (launch_d64.cu, launch_d128.cu).
#pragma once
#include "common/arch.cuh"
#include "sm89/launch.h"

namespace sage::attn {

template <int D>
cudaError_t launch_sm89_d(const AttentionParams& p, OutType out, PvAccum mode, cudaStream_t stream);

extern template cudaError_t launch_sm89_d<64>(const AttentionParams&, OutType, PvAccum, cudaStream_t);
extern template cudaError_t launch_sm89_d<128>(const AttentionParams&, OutType, PvAccum, cudaStream_t);

}  // namespace sage::attn

#ifdef SAGE_SM89_INSTANTIATE
#include "sm80/launch_template.cuh"
#include "sm89/value_fp8.cuh"

namespace sage::attn {

template <int D, typename OutT>
cudaError_t launch_sm89_mode(const AttentionParams& p, PvAccum mode, cudaStream_t stream) {
  switch (mode) {
    case PvAccum::kF32: return launch_attention<D, OutT, ValueFp8<D, PvAccum::kF32>>(p, stream);
    case PvAccum::kF32ThenF32: return launch_attention<D, OutT, ValueFp8<D, PvAccum::kF32ThenF32>>(p, stream);
#if SAGE_HAS_FP8_F16_ACCUM
    case PvAccum::kF8F16ThenF32: return launch_attention<D, OutT, ValueFp8<D, PvAccum::kF8F16ThenF32>>(p, stream);
#endif
    default: return cudaErrorInvalidValue;
  }
}

template <int D>
cudaError_t launch_sm89_d(const AttentionParams& p, OutType out, PvAccum mode, cudaStream_t stream) {
  return out == OutType::kBf16 ? launch_sm89_mode<D, __nv_bfloat16>(p, mode, stream)
                               : launch_sm89_mode<D, __half>(p, mode, stream);
}

template cudaError_t launch_sm89_d<SAGE_SM89_INSTANTIATE>(const AttentionParams&, OutType, PvAccum, cudaStream_t);

}  // namespace sage::attn
#endif

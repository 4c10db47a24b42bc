// Host entry point of the sm89 attention kernel (INT8 Q·Kᵀ, FP8 P·V). Torch-free.
#pragma once
#include "sm80/params.h"

namespace sage::attn {

// mode: kF32, kF32ThenF32 or kF8F16ThenF32 (the latter only when fp8_f16_accum_built()).
cudaError_t launch_sm89(const AttentionParams& p, int head_dim, OutType out, PvAccum mode, cudaStream_t stream);
bool fp8_f16_accum_built();

}  // namespace sage::attn

// Host entry point of the sm80 attention kernel (INT8 Q·Kᵀ, FP16 P·V). Torch-free.
#pragma once
#include "sm80/params.h"

namespace sage::attn {

// mode: kF32, kF16ThenF32 or kF16 (fp16 output only; bf16 always runs kF32).
cudaError_t launch_sm80(const AttentionParams& p, int head_dim, OutType out, PvAccum mode, cudaStream_t stream);

}  // namespace sage::attn

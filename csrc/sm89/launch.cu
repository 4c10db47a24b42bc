// sm89 launcher: (head dim, output type, accumulation) -> one attention_kernel<ValueFp8> instance. The instances
// live in launch_d64.cu / launch_d128.cu so the two compile in parallel.
#include "sm89/launch_sm89.cuh"

namespace sage::attn {

bool fp8_f16_accum_built() { return SAGE_HAS_FP8_F16_ACCUM != 0; }

cudaError_t launch_sm89(const AttentionParams& p, int head_dim, OutType out, PvAccum mode, cudaStream_t stream) {
  if (head_dim == 64) return launch_sm89_d<64>(p, out, mode, stream);
  if (head_dim == 128) return launch_sm89_d<128>(p, out, mode, stream);
  return cudaErrorInvalidValue;
}

}  // namespace sage::attn

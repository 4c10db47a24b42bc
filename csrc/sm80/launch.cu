// sm80 launcher: (head dim, output type, accumulation) -> one attention_kernel<ValueFp16> instance. The instances
// live in launch_d64.cu / launch_d128.cu so the two compile in parallel.
#include "sm80/launch_sm80.cuh"

namespace sage::attn {

cudaError_t launch_sm80(const AttentionParams& p, int head_dim, OutType out, PvAccum mode, cudaStream_t stream) {
  if (head_dim == 64) return launch_sm80_d<64>(p, out, mode, stream);
  if (head_dim == 128) return launch_sm80_d<128>(p, out, mode, stream);
  return cudaErrorInvalidValue;
}

}  // namespace sage::attn

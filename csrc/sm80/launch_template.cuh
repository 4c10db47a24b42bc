// Host-side launch of one attention_kernel instance. Torch-free; included by the sm80 and sm89 launchers.
#pragma once
#include "sm80/attention_kernel.cuh"

namespace sage::attn {

template <int D, typename OutT, class Value>
cudaError_t launch_attention(const AttentionParams& p, cudaStream_t stream) {
  constexpr int smem = smem_bytes<D, Value>();
  auto kernel = attention_kernel<D, OutT, Value>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid((p.Lq + kBlockQ - 1) / kBlockQ, p.Hq, p.B);
  kernel<<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace sage::attn

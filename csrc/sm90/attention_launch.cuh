// Launch templates of the sm90 attention kernel: tensor maps, template choice, launch. Torch-free.
// Instantiated once per head dim (attention_hd64.cu, attention_hd128.cu) so the two compile in parallel.
#pragma once

#include <algorithm>
#include <climits>

#include "sm90/attention_kernel.cuh"

namespace sageattn::sm90::detail {

template <int kHeadDim, bool kPerThread, bool kTwoLevel, bool kPingPong>
std::string launch(const AttentionProblem& p, cudaStream_t stream) {
  using Tile = AttentionTile<kHeadDim>;
  CUtensorMap tm_q, tm_k, tm_v;
  std::string err = encode_tiled_4d(&tm_q, p.q, kHeadDim, Tile::kBlockM, Tile::kQKSwizzle);
  if (err.empty()) err = encode_tiled_4d(&tm_k, p.k, kHeadDim, Tile::kBlockN, Tile::kQKSwizzle);
  if (err.empty()) err = encode_tiled_4d(&tm_v, p.vt, Tile::kBlockN, kHeadDim, Tile::kVSwizzle);
  if (!err.empty()) return err;

  auto kernel = attention_kernel<kHeadDim, kPerThread, kTwoLevel, kPingPong>;
  cudaError_t status =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile::kSmemBytes);
  if (status != cudaSuccess) return std::string("cudaFuncSetAttribute: ") + cudaGetErrorString(status);
  const int64_t work = int64_t((p.args.len_q + Tile::kBlockM - 1) / Tile::kBlockM) * p.args.heads_q * p.args.batch;
  if (work > INT32_MAX) return "too many query blocks for one launch";
  int64_t grid = work;
  if (p.persistent) {  // one CTA per SM: a CTA's registers and shared memory fill an SM
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    grid = std::min<int64_t>(work, std::max(sms, 1));
  }
  AttentionArgs args = p.args;
  if (Tile::kClaimsWork && grid < work) {
    status = cudaMemsetAsync(args.work_counter, 0, sizeof(int), stream);
    if (status != cudaSuccess) return std::string("sm90 work counter: ") + cudaGetErrorString(status);
  } else {
    args.work_counter = nullptr;  // every CTA's first tile is its only one, or the grid strides
  }
  kernel<<<static_cast<unsigned>(grid), Tile::kThreads, Tile::kSmemBytes, stream>>>(tm_q, tm_k, tm_v, args);
  status = cudaGetLastError();
  return status == cudaSuccess ? std::string() : std::string("sm90 attention launch: ") + cudaGetErrorString(status);
}

template <int kHeadDim, bool kPerThread, bool kTwoLevel>
std::string launch_schedule(const AttentionProblem& p, cudaStream_t stream) {
  return p.pingpong ? launch<kHeadDim, kPerThread, kTwoLevel, true>(p, stream)
                    : launch<kHeadDim, kPerThread, kTwoLevel, false>(p, stream);
}

template <int kHeadDim>
std::string launch_head_dim(const AttentionProblem& p, cudaStream_t stream) {
  if (p.per_thread) {
    return p.two_level ? launch_schedule<kHeadDim, true, true>(p, stream)
                       : launch_schedule<kHeadDim, true, false>(p, stream);
  }
  return p.two_level ? launch_schedule<kHeadDim, false, true>(p, stream)
                     : launch_schedule<kHeadDim, false, false>(p, stream);
}


}  // namespace sageattn::sm90::detail

// Launcher: picks the template instance for (dtype, head dim, Q group rows) and launches Q's codes and the two
// passes, each only when it has a role to play. Torch-free.
#include "quant/launch.h"
#include "quant/quant_kernels.cuh"

#include <type_traits>

namespace sage::quant {
namespace {

template <typename F>
cudaError_t with_dtype(DType t, F&& f) {
  if (t == DType::kHalf) return f(__half{});
  return f(__nv_bfloat16{});
}

template <typename F>
cudaError_t with_head_dim(int d, F&& f) {
  if (d == 64) return f(std::integral_constant<int, 64>{});
  if (d == 128) return f(std::integral_constant<int, 128>{});
  return cudaErrorInvalidValue;
}

int64_t heads(const Strided16& x) { return int64_t(x.B) * x.H; }

// Launches a grid of `blocks` (1-D; at most 2^31 - 1 blocks, far above any tensor that fits a GPU).
template <typename Kernel, typename... Args>
cudaError_t launch(Kernel kernel, int64_t blocks, cudaStream_t stream, const Args&... args) {
  if (blocks == 0) return cudaSuccess;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  kernel<<<unsigned(blocks), kThreads, 0, stream>>>(args...);
  return cudaGetLastError();
}

}  // namespace

cudaError_t run_quant(const QuantJobs& jobs, cudaStream_t stream) {
  const Strided16& any = jobs.do_q_int8 ? jobs.q : jobs.do_k_stats || jobs.do_k_int8 ? jobs.k : jobs.v;
  Pass1Grid g1{0, 0};
  Pass2Grid g2{0, 0};
  int64_t q_blocks = 0;
  if (jobs.do_k_stats) g1.k_stats = heads(jobs.k) * stats_splits(jobs.k.L);
  if (jobs.do_v_stats) g1.v_stats = heads(jobs.v) * stats_splits(jobs.v.L);
  if (jobs.do_q_int8) {
    if (jobs.q_int8.group_rows != 16 && jobs.q_int8.group_rows != 32) return cudaErrorInvalidValue;
    q_blocks = heads(jobs.q) * int8_blocks(jobs.q.L, jobs.q_int8.group_rows);
  }
  if (jobs.do_k_int8) {
    if (jobs.k_int8.group_rows != kKRows) return cudaErrorInvalidValue;
    g2.k_int8 = heads(jobs.k) * int8_blocks(jobs.k.L, kKRows);
  }
  return with_dtype(any.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_head_dim(any.D, [&](auto d) {
      constexpr int D = decltype(d)::value;
      if (jobs.do_v_fp8) g2.v_fp8 = heads(jobs.v) * fp8_v_blocks<D>(jobs.v_fp8.l_pad);
      const auto quant_q_kernel = jobs.q_int8.group_rows == 32 ? quant_q<T, D, 32> : quant_q<T, D, 16>;
      cudaError_t err = launch(quant_q_kernel, q_blocks, stream, jobs);
      if (err == cudaSuccess) err = launch(quant_pass1<T, D>, g1.k_stats + g1.v_stats, stream, jobs, g1);
      if (err == cudaSuccess) err = launch(quant_pass2<T, D>, g2.k_int8 + g2.v_fp8, stream, jobs, g2);
      return err;
    });
  });
}

}  // namespace sage::quant

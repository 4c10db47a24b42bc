// Launchers: pick the template instance for (dtype, head dim, group rows). Torch-free.
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

}  // namespace

int stats_splits(int L) { return L <= 0 ? 1 : (L + kStatsRowsPerSplit - 1) / kStatsRowsPerSplit; }

cudaError_t seq_stats(const Strided16& x, float* work, float* mean_out, float* amax_out, float* scale_out,
                      float amax_divisor, bool center, cudaStream_t stream) {
  const int splits = stats_splits(x.L);
  cudaError_t err = with_dtype(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_head_dim(x.D, [&](auto d) {
      dim3 grid(splits, x.H, x.B);
      seq_stats_partial<T, decltype(d)::value><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(x.ptr), x.stride_b, x.stride_h,
                                                               x.stride_l, x.L, work);
      return cudaGetLastError();
    });
  });
  if (err != cudaSuccess) return err;
  const int64_t n_bh = int64_t(x.B) * x.H, n = n_bh * x.D;
  seq_stats_finish<<<unsigned((n + 255) / 256), 256, 0, stream>>>(work, splits, x.L, x.D, n_bh, mean_out, amax_out,
                                                                 scale_out, amax_divisor, center);
  return cudaGetLastError();
}

cudaError_t quant_int8(const Strided16& x, const float* mean, int group_rows, int residues, int8_t* codes,
                       float* scales, cudaStream_t stream) {
  const int blocks = (x.L + group_rows - 1) / group_rows;
  const int n_groups = blocks * residues;
  if (blocks == 0) return cudaSuccess;
  return with_dtype(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_head_dim(x.D, [&](auto d) {
      constexpr int D = decltype(d)::value;
      dim3 grid(blocks, x.H, x.B);
      auto args = [&](auto kernel) {
        kernel<<<grid, kThreads, 0, stream>>>(static_cast<const T*>(x.ptr), x.stride_b, x.stride_h, x.stride_l, x.L,
                                              mean, residues, codes, scales, n_groups);
        return cudaGetLastError();
      };
      if (group_rows == 16) return args(quant_int8_kernel<T, D, 16>);
      if (group_rows == 32) return args(quant_int8_kernel<T, D, 32>);
      if (group_rows == 64) return args(quant_int8_kernel<T, D, 64>);
      return cudaErrorInvalidValue;
    });
  });
}

cudaError_t quant_v_fp8(const Strided16& v, const float* mean, const float* amax, uint8_t* vt, int l_pad,
                        cudaStream_t stream) {
  if (l_pad == 0) return cudaSuccess;
  return with_dtype(v.dtype, [&](auto tag) {
    using T = decltype(tag);
    return with_head_dim(v.D, [&](auto d) {
      dim3 grid(l_pad / 64, v.H, v.B);
      quant_v_fp8_kernel<T, decltype(d)::value><<<grid, decltype(d)::value, 0, stream>>>(static_cast<const T*>(v.ptr), v.stride_b, v.stride_h,
                                                                v.stride_l, v.L, mean, amax, vt, l_pad);
      return cudaGetLastError();
    });
  });
}

}  // namespace sage::quant

// Torch bindings of the quantization kernels (module sageattention._C_quant). Checks inputs, allocates outputs,
// calls the torch-free launchers in launch.cu on the current stream.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "common/check.h"
#include "quant/launch.h"

namespace sq = sage::quant;

namespace {

sq::Strided16 as_strided16(const at::Tensor& x, const char* name) {
  SA_CHECK(x.is_cuda(), name, " must be a CUDA tensor");
  SA_CHECK(x.dim() == 4, name, " must be [B, H, L, D], got ", x.dim(), " dims");
  SA_CHECK(x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16, name, " must be fp16 or bf16, got ",
              x.scalar_type());
  SA_CHECK(x.size(3) == 64 || x.size(3) == 128, name, " head dim must be 64 or 128 (pad it), got ", x.size(3));
  SA_CHECK(x.stride(3) == 1, name, " must have a contiguous last dim (call .contiguous())");
  const auto aligned = [](int64_t s) { return s % 8 == 0; };
  SA_CHECK(aligned(x.stride(0)) && aligned(x.stride(1)) && aligned(x.stride(2)) &&
                  reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0,
              name, " rows must be 16-byte aligned (call .contiguous())");
  return {x.data_ptr(), x.stride(0), x.stride(1), x.stride(2),
          int(x.size(0)), int(x.size(1)), int(x.size(2)), int(x.size(3)),
          x.scalar_type() == at::kHalf ? sq::DType::kHalf : sq::DType::kBf16};
}

void check(cudaError_t err, const char* what) {
  SA_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

// (mean [B, H, D] fp32, amax or empty, scale or empty)
std::vector<at::Tensor> stats(const at::Tensor& x, bool want_amax, bool center, double amax_divisor) {
  const auto s = as_strided16(x, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  const auto f32 = x.options().dtype(at::kFloat);
  auto work = at::empty({3 * int64_t(s.B) * s.H * sq::stats_splits(s.L) * s.D}, f32);
  auto mean = at::empty({s.B, s.H, s.D}, f32);
  at::Tensor amax, scale;
  if (want_amax) amax = at::empty({s.B, s.H, s.D}, f32), scale = at::empty({s.B, s.H, s.D}, f32);
  check(sq::seq_stats(s, work.data_ptr<float>(), mean.data_ptr<float>(), want_amax ? amax.data_ptr<float>() : nullptr,
                      want_amax ? scale.data_ptr<float>() : nullptr, float(amax_divisor), center,
                      c10::cuda::getCurrentCUDAStream().stream()),
        "seq_stats");
  return {mean, amax, scale};
}

}  // namespace

// Mean over the sequence, fp32 [B, H, D].
at::Tensor seq_mean(const at::Tensor& x) { return stats(x, false, true, 1.0)[0]; }

// INT8 codes [B, H, L, D] and fp32 scales [B, H, n_groups] of x - mean (mean optional, [B, H, D] fp32).
std::vector<at::Tensor> quant_int8(const at::Tensor& x, const c10::optional<at::Tensor>& mean, int64_t group_rows,
                                   int64_t residues) {
  const auto s = as_strided16(x, "x");
  SA_CHECK(group_rows == 16 || group_rows == 32 || group_rows == 64, "group_rows must be 16, 32 or 64, got ",
              group_rows);
  SA_CHECK(residues == 1 || residues == 4 || residues == 8, "residues must be 1, 4 or 8, got ", residues);
  const float* mean_ptr = nullptr;
  if (mean.has_value()) {
    const auto& m = *mean;
    SA_CHECK(m.scalar_type() == at::kFloat && m.is_contiguous() && m.device() == x.device() &&
                    m.sizes() == at::IntArrayRef({s.B, s.H, s.D}),
                "mean must be a contiguous fp32 [B, H, D] tensor on x's device");
    mean_ptr = m.data_ptr<float>();
  }
  const c10::cuda::CUDAGuard guard(x.device());
  auto codes = at::empty({s.B, s.H, s.L, s.D}, x.options().dtype(at::kChar));
  const int64_t groups = (s.L + group_rows - 1) / group_rows * residues;
  auto scales = at::empty({s.B, s.H, groups}, x.options().dtype(at::kFloat));
  check(sq::quant_int8(s, mean_ptr, int(group_rows), int(residues), codes.data_ptr<int8_t>(), scales.data_ptr<float>(),
                       c10::cuda::getCurrentCUDAStream().stream()),
        "quant_int8");
  return {codes, scales};
}

// (V^T e4m3 [B, H, D, ceil(L/64)*64] key-permuted, scale [B, H, D], mean [B, H, D] (zeros without smooth_v)).
std::vector<at::Tensor> quant_v_fp8(const at::Tensor& v, bool smooth_v) {
  const auto s = as_strided16(v, "v");
  auto st = stats(v, true, smooth_v, 448.0);
  const c10::cuda::CUDAGuard guard(v.device());
  const int64_t l_pad = (int64_t(s.L) + 63) / 64 * 64;
  auto vt = at::empty({s.B, s.H, s.D, l_pad}, v.options().dtype(at::kFloat8_e4m3fn));
  check(sq::quant_v_fp8(s, st[0].data_ptr<float>(), st[1].data_ptr<float>(), static_cast<uint8_t*>(vt.data_ptr()),
                        int(l_pad), c10::cuda::getCurrentCUDAStream().stream()),
        "quant_v_fp8");
  return {vt, st[2], st[0]};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("seq_mean", &seq_mean, "mean over the sequence, fp32 [B, H, D]");
  m.def("quant_int8", &quant_int8, "INT8 per-warp / per-thread quantization with fused mean subtraction");
  m.def("quant_v_fp8", &quant_v_fp8, "FP8 e4m3 per-channel V, transposed and permuted for the mma");
}

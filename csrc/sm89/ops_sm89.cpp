// Torch binding of the sm89 kernel (module sageattention._C_sm89): INT8 Q·Kᵀ, FP8 e4m3 P·V.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "common/torch_params.h"
#include "sm89/launch.h"

namespace sa = sage::attn;

// vt: e4m3 V^T [B, Hkv, D, l_pad] from quant_v_fp8; v_scale / v_mean [B, Hkv, D] fp32 (v_mean only with
// smooth_v). accum: "fp32", "fp32+fp32" or "fp32+fp16"; p_scale multiplies P before it is rounded to e4m3.
std::vector<at::Tensor> attention(const at::Tensor& q8, const at::Tensor& k8, const at::Tensor& vt,
                                  const at::Tensor& v_scale, const c10::optional<at::Tensor>& v_mean,
                                  const at::Tensor& q_scale, const at::Tensor& k_scale, int64_t q_group_rows,
                                  int64_t q_residues, int64_t k_residues, double qk_scale, bool causal,
                                  int64_t causal_offset, const std::string& accum, double p_scale, bool out_bf16,
                                  bool return_lse) {
  auto p = sa::qk_params(q8, k8, q_scale, k_scale, q_group_rows, q_residues, k_residues, qk_scale, causal, causal_offset);
  const int64_t D = q8.size(3), l_pad = (int64_t(p.Lk) + 63) / 64 * 64;
  SA_CHECK(vt.scalar_type() == at::kFloat8_e4m3fn && vt.is_contiguous() && vt.device() == q8.device(),
              "vt must be a contiguous float8_e4m3fn tensor (from quant_v_fp8) on q8's device");
  SA_CHECK(vt.sizes() == at::IntArrayRef({p.B, p.Hkv, D, l_pad}), "vt must be [B, Hkv, D, ", l_pad, "], got ",
              vt.sizes());
  sa::check_f32(v_scale, "v_scale", {p.B, p.Hkv, D}, q8);
  if (v_mean.has_value()) sa::check_f32(*v_mean, "v_mean", {p.B, p.Hkv, D}, q8);
  sa::PvAccum mode;
  if (accum == "fp32") mode = sa::PvAccum::kF32;
  else if (accum == "fp32+fp32") mode = sa::PvAccum::kF32ThenF32;
  else if (accum == "fp32+fp16") mode = sa::PvAccum::kF8F16ThenF32;
  else SA_CHECK(false, "accum must be 'fp32', 'fp32+fp32' or 'fp32+fp16', got '", accum, "'");
  SA_CHECK(mode != sa::PvAccum::kF8F16ThenF32 || sa::fp8_f16_accum_built(),
              "accum 'fp32+fp16' needs a build with nvcc >= 12.8; use 'fp32+fp32'");
  SA_CHECK(p_scale > 0, "p_scale must be positive");
  p.v = vt.data_ptr();
  p.v_len_padded = int(l_pad);
  p.v_scale = v_scale.data_ptr<float>();
  p.v_mean = v_mean.has_value() ? v_mean->data_ptr<float>() : nullptr;
  p.p_scale = float(p_scale);
  const c10::cuda::CUDAGuard guard(q8.device());
  auto out = sa::outputs(p, q8, out_bf16 ? at::kBFloat16 : at::kHalf, return_lse);
  if (p.Lq == 0 || p.B == 0 || p.Hq == 0) return out;
  const cudaError_t err = sa::launch_sm89(p, int(D), out_bf16 ? sa::OutType::kBf16 : sa::OutType::kHalf, mode,
                                          c10::cuda::getCurrentCUDAStream().stream());
  SA_CHECK(err == cudaSuccess, "sm89 attention launch failed: ", cudaGetErrorString(err));
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attention", &attention, "INT8 Q·Kᵀ + FP8 P·V attention (sm89+)");
  m.def("fp8_f16_accum_built", &sa::fp8_f16_accum_built, "whether the 'fp32+fp16' mode was compiled (nvcc >= 12.8)");
}

// Torch binding of the sm80 kernel (module sageattention._C_sm80): INT8 Q·Kᵀ, FP16/BF16 P·V.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "common/torch_params.h"
#include "sm80/launch.h"

namespace sa = sage::attn;

// v: the caller's [B, Hkv, Lk, D] fp16/bf16 tensor (any strides with a contiguous, 16-byte aligned last dim).
// accum: "fp32", "fp16+fp32" or "fp16" (bf16 inputs always accumulate in fp32). Returns [o, lse].
std::vector<at::Tensor> attention(const at::Tensor& q8, const at::Tensor& k8, const at::Tensor& v,
                                  const at::Tensor& q_scale, const at::Tensor& k_scale, int64_t q_group_rows,
                                  int64_t q_residues, int64_t k_residues, double qk_scale, bool causal,
                                  int64_t causal_offset, const std::string& accum, bool return_lse) {
  auto p = sa::qk_params(q8, k8, q_scale, k_scale, q_group_rows, q_residues, k_residues, qk_scale, causal, causal_offset);
  SA_CHECK(v.scalar_type() == at::kHalf || v.scalar_type() == at::kBFloat16, "v must be fp16 or bf16");
  SA_CHECK(v.device() == q8.device() && v.dim() == 4 && v.size(0) == p.B && v.size(1) == p.Hkv && v.size(2) == p.Lk &&
                  v.size(3) == q8.size(3),
              "v must be [B, Hkv, Lk, D] like k8 on its device, got ", v.sizes());
  SA_CHECK(v.stride(3) == 1 && v.stride(0) % 8 == 0 && v.stride(1) % 8 == 0 && v.stride(2) % 8 == 0 &&
                  reinterpret_cast<uintptr_t>(v.data_ptr()) % 16 == 0,
              "v rows must be contiguous and 16-byte aligned (call .contiguous())");
  sa::PvAccum mode;
  if (accum == "fp32") mode = sa::PvAccum::kF32;
  else if (accum == "fp16+fp32") mode = sa::PvAccum::kF16ThenF32;
  else if (accum == "fp16") mode = sa::PvAccum::kF16;
  else SA_CHECK(false, "accum must be 'fp32', 'fp16+fp32' or 'fp16', got '", accum, "'");
  const bool bf16 = v.scalar_type() == at::kBFloat16;
  if (bf16) mode = sa::PvAccum::kF32;
  p.v = v.data_ptr();
  p.v_stride_b = v.stride(0), p.v_stride_h = v.stride(1), p.v_stride_l = v.stride(2);
  const c10::cuda::CUDAGuard guard(q8.device());
  auto out = sa::outputs(p, q8, v.scalar_type(), return_lse);
  if (p.Lq == 0 || p.B == 0 || p.Hq == 0) return out;
  const cudaError_t err = sa::launch_sm80(p, int(q8.size(3)), bf16 ? sa::OutType::kBf16 : sa::OutType::kHalf, mode,
                                          c10::cuda::getCurrentCUDAStream().stream());
  SA_CHECK(err == cudaSuccess, "sm80 attention launch failed: ", cudaGetErrorString(err));
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attention", &attention, "INT8 Q·Kᵀ + FP16 P·V attention (sm80+)");
}

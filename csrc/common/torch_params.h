// Shared by the ops_*.cpp binding units only (the one place torch meets the kernels): checks the INT8 Q·Kᵀ
// inputs every attention kernel takes and fills the common part of AttentionParams.
#pragma once
#include <torch/extension.h>

#include "common/check.h"
#include "sm80/params.h"

namespace sage::attn {

inline void check_f32(const at::Tensor& t, const char* name, at::IntArrayRef sizes, const at::Tensor& like) {
  SA_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(), name, " must be a contiguous fp32 tensor");
  SA_CHECK(t.device() == like.device(), name, " must be on ", like.device());
  SA_CHECK(t.sizes() == sizes, name, " must have shape ", sizes, ", got ", t.sizes());
}

// q8 [B, Hq, Lq, D], k8 [B, Hkv, Lk, D] contiguous int8; scales grouped as quant/spec.py says.
inline AttentionParams qk_params(const at::Tensor& q8, const at::Tensor& k8, const at::Tensor& q_scale,
                                 const at::Tensor& k_scale, int64_t q_group_rows, int64_t q_residues,
                                 int64_t k_residues, double qk_scale, bool causal, int64_t causal_offset) {
  SA_CHECK(q8.is_cuda() && k8.device() == q8.device(), "q8 and k8 must be CUDA tensors on one device");
  SA_CHECK(q8.scalar_type() == at::kChar && k8.scalar_type() == at::kChar, "q8 and k8 must be int8 codes");
  SA_CHECK(q8.dim() == 4 && k8.dim() == 4 && q8.is_contiguous() && k8.is_contiguous(),
              "q8 and k8 must be contiguous [B, H, L, D]");
  const int64_t B = q8.size(0), Hq = q8.size(1), Lq = q8.size(2), D = q8.size(3), Hkv = k8.size(1), Lk = k8.size(2);
  SA_CHECK(D == 64 || D == 128, "head dim must be 64 or 128 (pad it), got ", D);
  SA_CHECK(k8.size(0) == B && k8.size(3) == D, "k8 must be [", B, ", Hkv, Lk, ", D, "], got ", k8.sizes());
  SA_CHECK(Hkv > 0 && Hq % Hkv == 0, "query heads (", Hq, ") must be a multiple of key heads (", Hkv, ")");
  SA_CHECK(q_group_rows == 16 || q_group_rows == 32, "q_group_rows must be 16 or 32, got ", q_group_rows);
  SA_CHECK(q_residues == 1 || q_residues == 8, "q_residues must be 1 or 8, got ", q_residues);
  SA_CHECK(k_residues == 1 || k_residues == 4, "k_residues must be 1 or 4, got ", k_residues);
  const int64_t n_q = (Lq + q_group_rows - 1) / q_group_rows * q_residues, n_k = (Lk + 63) / 64 * k_residues;
  check_f32(q_scale, "q_scale", {B, Hq, n_q}, q8);
  check_f32(k_scale, "k_scale", {B, Hkv, n_k}, q8);
  SA_CHECK(Lq < (1 << 30) && Lk < (1 << 30), "sequence too long");
  AttentionParams p{};
  p.q = q8.data_ptr<int8_t>();
  p.k = k8.data_ptr<int8_t>();
  p.q_scale = q_scale.data_ptr<float>();
  p.k_scale = k_scale.data_ptr<float>();
  p.B = int(B), p.Hq = int(Hq), p.Hkv = int(Hkv), p.Lq = int(Lq), p.Lk = int(Lk);
  p.q_group_rows = int(q_group_rows), p.q_residues = int(q_residues), p.k_residues = int(k_residues);
  p.n_q_groups = int(n_q), p.n_k_groups = int(n_k);
  p.qk_scale = float(qk_scale);
  p.p_scale = 1.f;
  p.causal = causal ? 1 : 0;
  p.causal_offset = int(causal_offset);
  return p;
}

// Allocates o [B, Hq, Lq, D] and lse [B, Hq, Lq] (empty [0] without return_lse) and points p at them.
inline std::vector<at::Tensor> outputs(AttentionParams& p, const at::Tensor& q8, at::ScalarType dtype, bool return_lse) {
  auto o = at::empty(q8.sizes(), q8.options().dtype(dtype));
  auto lse = at::empty(return_lse ? at::IntArrayRef({q8.size(0), q8.size(1), q8.size(2)}) : at::IntArrayRef({0}),
                       q8.options().dtype(at::kFloat));
  p.o = o.data_ptr();
  p.lse = return_lse ? lse.data_ptr<float>() : nullptr;
  return {o, lse};
}

}  // namespace sage::attn

// Torch binding of the sm90 attention kernel: checks tensors, describes them to the launcher, launches on
// torch's current stream. The only file of _C_sm90 that includes torch.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "common/check.h"
#include "sm90/attention_params.h"

namespace {

using sageattn::sm90::ByteTensor4d;

void check_cuda(const at::Tensor& t, const char* name, at::ScalarType dtype, int dims) {
  SA_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  SA_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  SA_CHECK(t.dim() == dims, name, " must have ", dims, " dims, got ", t.dim());
}

// [B, H, rows, inner] with a contiguous inner dim -> 4-D byte tensor, innermost first.
ByteTensor4d describe(const at::Tensor& t, const char* name) {
  SA_CHECK(t.stride(3) == 1, name, " needs a contiguous last dim");
  const int64_t es = t.element_size();
  return ByteTensor4d{t.data_ptr(),
                      {uint64_t(t.size(3)), uint64_t(t.size(2)), uint64_t(t.size(1)), uint64_t(t.size(0))},
                      {uint64_t(t.stride(2) * es), uint64_t(t.stride(1) * es), uint64_t(t.stride(0) * es)}};
}

void forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& vt, const at::Tensor& q_scale,
             const at::Tensor& k_scale, const at::Tensor& v_scale, const std::optional<at::Tensor>& v_mean,
             double qk_scale, at::Tensor& out, const std::optional<at::Tensor>& lse, bool causal,
             int64_t causal_offset, bool per_thread, bool two_level, bool pingpong, bool persistent) {
  check_cuda(q, "q", at::kChar, 4);
  check_cuda(k, "k", at::kChar, 4);
  SA_CHECK(vt.scalar_type() == at::kFloat8_e4m3fn || vt.scalar_type() == at::kByte,
              "vt must hold e4m3 codes (float8_e4m3fn or uint8)");
  check_cuda(vt, "vt", vt.scalar_type(), 4);
  check_cuda(q_scale, "q_scale", at::kFloat, 3);
  check_cuda(k_scale, "k_scale", at::kFloat, 3);
  check_cuda(v_scale, "v_scale", at::kFloat, 3);
  SA_CHECK(out.is_cuda() && (out.scalar_type() == at::kHalf || out.scalar_type() == at::kBFloat16),
              "out must be a CUDA fp16 or bf16 tensor");
  const int64_t b = q.size(0), hq = q.size(1), lq = q.size(2), d = q.size(3);
  const int64_t hkv = k.size(1), lk = k.size(2);
  SA_CHECK(k.size(0) == b && k.size(3) == d, "k must be [B, Hkv, Lk, D] like q");
  SA_CHECK(vt.size(0) == b && vt.size(1) == hkv && vt.size(2) == d && vt.size(3) >= lk && vt.size(3) % 64 == 0,
              "vt must be [B, Hkv, D, Lk rounded up to 64]");
  SA_CHECK(out.dim() == 4 && out.size(0) == b && out.size(1) == hq && out.size(2) == lq && out.size(3) == d &&
                  out.stride(3) == 1,
              "out must be [B, Hq, Lq, D] with a contiguous last dim");
  SA_CHECK(q_scale.is_contiguous() && k_scale.is_contiguous() && v_scale.is_contiguous(),
              "scales must be contiguous");
  SA_CHECK(q_scale.size(0) == b && q_scale.size(1) == hq, "q_scale must be [B, Hq, groups]");
  SA_CHECK(k_scale.size(0) == b && k_scale.size(1) == hkv, "k_scale must be [B, Hkv, groups]");
  SA_CHECK(v_scale.size(0) == b && v_scale.size(1) == hkv && v_scale.size(2) == d, "v_scale must be [B, Hkv, D]");
  const int64_t q_groups = (lq + 15) / 16 * (per_thread ? 8 : 1);
  const int64_t k_groups = (lk + 63) / 64 * (per_thread ? 4 : 1);
  SA_CHECK(q_scale.size(2) == q_groups, "q_scale has ", q_scale.size(2), " groups, expected ", q_groups);
  SA_CHECK(k_scale.size(2) == k_groups, "k_scale has ", k_scale.size(2), " groups, expected ", k_groups);
  const float* v_mean_ptr = nullptr;
  if (v_mean.has_value()) {
    check_cuda(*v_mean, "v_mean", at::kFloat, 3);
    SA_CHECK(v_mean->is_contiguous() && v_mean->sizes() == v_scale.sizes(), "v_mean must be like v_scale");
    v_mean_ptr = v_mean->data_ptr<float>();
  }
  float* lse_ptr = nullptr;
  if (lse.has_value()) {
    check_cuda(*lse, "lse", at::kFloat, 3);
    SA_CHECK(lse->is_contiguous() && lse->size(0) == b && lse->size(1) == hq && lse->size(2) == lq,
                "lse must be a contiguous [B, Hq, Lq]");
    lse_ptr = lse->data_ptr<float>();
  }
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&k, &vt, &q_scale, &k_scale, &v_scale, &out}) {
    SA_CHECK(t->device() == q.device(), "all tensors must be on q's device");
  }

  sageattn::sm90::AttentionProblem p;
  p.q = describe(q, "q");
  p.k = describe(k, "k");
  p.vt = describe(vt, "vt");
  p.head_dim = static_cast<int>(d);
  p.per_thread = per_thread;
  p.two_level = two_level;
  p.pingpong = pingpong;
  p.persistent = persistent;
  auto& a = p.args;
  a.q_scale = q_scale.data_ptr<float>();
  a.k_scale = k_scale.data_ptr<float>();
  a.v_scale = v_scale.data_ptr<float>();
  a.v_mean = v_mean_ptr;
  a.qk_scale = static_cast<float>(qk_scale);
  a.out = out.data_ptr();
  a.lse = lse_ptr;
  a.out_stride_b = out.stride(0);
  a.out_stride_h = out.stride(1);
  a.out_stride_l = out.stride(2);
  a.batch = static_cast<int>(b);
  a.heads_q = static_cast<int>(hq);
  a.heads_kv = static_cast<int>(hkv);
  a.len_q = static_cast<int>(lq);
  a.len_k = static_cast<int>(lk);
  a.q_groups = static_cast<int>(q_groups);
  a.k_groups = static_cast<int>(k_groups);
  a.causal = causal;
  a.causal_offset = static_cast<int>(causal_offset);
  a.out_bf16 = out.scalar_type() == at::kBFloat16;
  // Scratch for the launcher (zeroed there when the kernel claims work tiles). Freed when this returns; the
  // caching allocator hands it out again only to work ordered after the kernel on this stream.
  const at::Tensor work_counter = at::empty({1}, q.options().dtype(at::kInt));
  a.work_counter = work_counter.data_ptr<int>();

  const c10::cuda::CUDAGuard guard(q.device());
  const std::string err = sageattn::sm90::attention_forward(p, c10::cuda::getCurrentCUDAStream());
  SA_CHECK(err.empty(), err);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.doc() = "sageattention sm90a kernels: TMA + wgmma INT8 Q·Kᵀ, FP8 P·V attention";
  m.def("forward", &forward, "attention forward into out (and lse)", py::arg("q"), py::arg("k"), py::arg("vt"),
        py::arg("q_scale"), py::arg("k_scale"), py::arg("v_scale"), py::arg("v_mean"), py::arg("qk_scale"),
        py::arg("out"), py::arg("lse"), py::arg("causal"), py::arg("causal_offset"), py::arg("per_thread"),
        py::arg("two_level"), py::arg("pingpong") = true, py::arg("persistent") = true);
}

// Torch bindings of the quantization kernels (module sageattention._C_quant). Checks inputs, allocates outputs
// and workspace, calls the torch-free launcher in launch.cu on the current stream.
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

sq::Strided16 absent() { return {nullptr, 0, 0, 0, 0, 0, 0, 0, sq::DType::kHalf}; }

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void run(const sq::QuantJobs& jobs) {
  const cudaError_t err = sq::run_quant(jobs, current_stream());
  SA_CHECK(err == cudaSuccess, "quantization kernels failed: ", cudaGetErrorString(err));
}

at::Tensor f32(const at::Tensor& like, at::IntArrayRef shape) { return at::empty(shape, like.options().dtype(at::kFloat)); }

// Words of scratch the statistics of one [B, H, L, D] tensor need: partial sums (3 planes) and, with want_amax,
// the amax; plus B * H arrival counters.
int64_t stats_floats(const sq::Strided16& s, bool want_amax) {
  const int64_t heads = int64_t(s.B) * s.H;
  return 3 * heads * sq::stats_splits(s.L) * s.D + (want_amax ? heads * s.D : 0);
}

// A call's scratch in one allocation (host time: each tensor costs an allocator round trip): float words, then
// counters zeroed by one memset on the call's stream (capturable in a CUDA graph). Callers hold a device guard.
struct Scratch {
  at::Tensor buf;
  float* floats;
  unsigned* counters;
  Scratch(const at::Tensor& like, int64_t float_words, int64_t counter_words) {
    buf = f32(like, {float_words + counter_words});
    floats = buf.data_ptr<float>();
    counters = reinterpret_cast<unsigned*>(floats + float_words);
    if (counter_words == 0) return;
    const cudaError_t err = cudaMemsetAsync(counters, 0, size_t(counter_words) * 4, current_stream());
    SA_CHECK(err == cudaSuccess, "zeroing the quantization counters failed: ", cudaGetErrorString(err));
  }
};

// Statistics of x: the spec, its scratch (taken from `scratch` in stats_floats order) and the outputs it writes
// (mean, and with want_amax the scale), kept alive by the caller.
struct Stats {
  at::Tensor mean, scale;
  sq::StatsSpec spec;
  Stats(const at::Tensor& x, const sq::Strided16& s, bool want_amax, bool center, float amax_divisor, float*& floats,
        unsigned*& counters) {
    const int64_t heads = int64_t(s.B) * s.H;
    mean = f32(x, {s.B, s.H, s.D});
    if (want_amax) scale = f32(x, {s.B, s.H, s.D});
    float* work = floats;
    floats += 3 * heads * sq::stats_splits(s.L) * s.D;
    float* amax = want_amax ? floats : nullptr;
    if (want_amax) floats += heads * s.D;
    spec = {work, counters, mean.data_ptr<float>(), amax, want_amax ? scale.data_ptr<float>() : nullptr, amax_divisor,
            center};
    counters += heads;
  }
};

// INT8 outputs of x: codes [B, H, L, D] and scales [B, H, n_groups].
struct Int8Out {
  at::Tensor codes, scales;
  sq::Int8Spec spec;
  Int8Out(const at::Tensor& x, const sq::Strided16& s, const float* mean, int group_rows, int residues) {
    codes = at::empty({s.B, s.H, s.L, s.D}, x.options().dtype(at::kChar));
    scales = f32(x, {s.B, s.H, (int64_t(s.L) + group_rows - 1) / group_rows * residues});
    spec = {mean, group_rows, residues, codes.data_ptr<int8_t>(), scales.data_ptr<float>()};
  }
};

at::Tensor empty_like_none(const at::Tensor& x) { return at::empty({0}, x.options().dtype(at::kFloat)); }

void check_groups(int64_t group_rows, int64_t residues) {
  SA_CHECK(group_rows == 16 || group_rows == 32 || group_rows == 64, "group_rows must be 16, 32 or 64, got ",
           group_rows);
  SA_CHECK(residues == 1 || residues == 4 || residues == 8, "residues must be 1, 4 or 8, got ", residues);
}

}  // namespace

// Mean over the sequence, fp32 [B, H, D].
at::Tensor seq_mean(const at::Tensor& x) {
  const auto s = as_strided16(x, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  Scratch scratch(x, stats_floats(s, false), int64_t(s.B) * s.H);
  Stats st(x, s, false, true, 1.f, scratch.floats, scratch.counters);
  sq::QuantJobs jobs{};
  jobs.q = jobs.v = absent();
  jobs.k = s;
  jobs.do_k_stats = true;
  jobs.k_stats = st.spec;
  run(jobs);
  return st.mean;
}

// INT8 codes [B, H, L, D] and fp32 scales [B, H, n_groups] of x - mean (mean optional, [B, H, D] fp32).
std::vector<at::Tensor> quant_int8(const at::Tensor& x, const c10::optional<at::Tensor>& mean, int64_t group_rows,
                                   int64_t residues) {
  const auto s = as_strided16(x, "x");
  check_groups(group_rows, residues);
  const float* mean_ptr = nullptr;
  if (mean.has_value()) {
    const auto& m = *mean;
    SA_CHECK(m.scalar_type() == at::kFloat && m.is_contiguous() && m.device() == x.device() &&
                    m.sizes() == at::IntArrayRef({s.B, s.H, s.D}),
                "mean must be a contiguous fp32 [B, H, D] tensor on x's device");
    mean_ptr = m.data_ptr<float>();
  }
  const c10::cuda::CUDAGuard guard(x.device());
  Int8Out out(x, s, mean_ptr, int(group_rows), int(residues));
  sq::QuantJobs jobs{};
  jobs.v = absent();
  if (group_rows == 64) {  // pass 2's INT8 role (K's groups)
    jobs.q = absent(), jobs.k = s, jobs.do_k_int8 = true, jobs.k_int8 = out.spec;
  } else {
    jobs.k = absent(), jobs.q = s, jobs.do_q_int8 = true, jobs.q_int8 = out.spec;
  }
  run(jobs);
  return {out.codes, out.scales};
}

// (V^T e4m3 [B, H, D, ceil(L/64)*64] key-permuted, scale [B, H, D], mean [B, H, D] (zeros without smooth_v)).
std::vector<at::Tensor> quant_v_fp8(const at::Tensor& v, bool smooth_v) {
  const auto s = as_strided16(v, "v");
  const c10::cuda::CUDAGuard guard(v.device());
  Scratch scratch(v, stats_floats(s, true), int64_t(s.B) * s.H);
  Stats st(v, s, true, smooth_v, 448.f, scratch.floats, scratch.counters);
  const int64_t l_pad = (int64_t(s.L) + 63) / 64 * 64;
  auto vt = at::empty({s.B, s.H, s.D, l_pad}, v.options().dtype(at::kFloat8_e4m3fn));
  sq::QuantJobs jobs{};
  jobs.q = jobs.k = absent();
  jobs.v = s;
  jobs.do_v_stats = jobs.do_v_fp8 = true;
  jobs.v_stats = st.spec;
  jobs.v_fp8 = {st.mean.data_ptr<float>(), st.spec.amax, static_cast<uint8_t*>(vt.data_ptr()), int(l_pad)};
  run(jobs);
  return {vt, st.scale, st.mean};
}

// Everything one attention call needs, in three launches (launch.h QuantJobs):
// [q codes, q scales, k codes, k scales, k mean (empty without smooth_k), V^T codes, v scale, v mean] with the
// last three empty when v is None (16-bit P·V). Q and K per quant_int8, V per quant_v_fp8.
std::vector<at::Tensor> quant_qkv(const at::Tensor& q, const at::Tensor& k, const c10::optional<at::Tensor>& v,
                                  int64_t q_group_rows, int64_t q_residues, int64_t k_residues, bool smooth_k,
                                  bool smooth_v) {
  const auto sq_ = as_strided16(q, "q");
  const auto sk = as_strided16(k, "k");
  check_groups(q_group_rows, q_residues);
  check_groups(64, k_residues);
  SA_CHECK(q_group_rows == 16 || q_group_rows == 32, "q_group_rows must be 16 or 32, got ", q_group_rows);
  SA_CHECK(q.scalar_type() == k.scalar_type() && q.size(3) == k.size(3) && q.size(0) == k.size(0) &&
               q.device() == k.device(),
           "q and k must share dtype, head dim, batch and device");
  c10::optional<sq::Strided16> sv;
  if (v.has_value()) {
    sv = as_strided16(*v, "v");
    SA_CHECK(v->sizes() == k.sizes() && v->scalar_type() == k.scalar_type() && v->device() == k.device(),
             "v must have k's shape ", k.sizes(), ", dtype and device, got ", v->sizes());
  }
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t kv_heads = int64_t(sk.B) * sk.H;
  Scratch scratch(k, (smooth_k ? stats_floats(sk, false) : 0) + (sv ? stats_floats(*sv, true) : 0),
                  (int64_t(smooth_k) + int64_t(sv.has_value())) * kv_heads);
  float* floats = scratch.floats;
  unsigned* counters = scratch.counters;
  sq::QuantJobs jobs{};
  jobs.q = sq_, jobs.k = sk, jobs.v = absent();
  c10::optional<Stats> k_stats;
  if (smooth_k) {
    k_stats.emplace(k, sk, false, true, 1.f, floats, counters);
    jobs.do_k_stats = true, jobs.k_stats = k_stats->spec;
  }
  Int8Out q_out(q, sq_, nullptr, int(q_group_rows), int(q_residues));
  Int8Out k_out(k, sk, smooth_k ? k_stats->mean.data_ptr<float>() : nullptr, 64, int(k_residues));
  jobs.do_q_int8 = jobs.do_k_int8 = true;
  jobs.q_int8 = q_out.spec, jobs.k_int8 = k_out.spec;
  c10::optional<Stats> v_stats;
  at::Tensor vt, v_scale, v_mean;
  if (sv) {
    v_stats.emplace(*v, *sv, true, smooth_v, 448.f, floats, counters);
    const int64_t l_pad = (int64_t(sv->L) + 63) / 64 * 64;
    vt = at::empty({sv->B, sv->H, sv->D, l_pad}, v->options().dtype(at::kFloat8_e4m3fn));
    jobs.v = *sv;
    jobs.do_v_stats = jobs.do_v_fp8 = true;
    jobs.v_stats = v_stats->spec;
    jobs.v_fp8 = {v_stats->mean.data_ptr<float>(), v_stats->spec.amax, static_cast<uint8_t*>(vt.data_ptr()),
                  int(l_pad)};
    v_scale = v_stats->scale, v_mean = v_stats->mean;
  } else {
    vt = empty_like_none(q), v_scale = empty_like_none(q), v_mean = empty_like_none(q);
  }
  run(jobs);
  const at::Tensor k_mean = smooth_k ? k_stats->mean : empty_like_none(q);
  return {q_out.codes, q_out.scales, k_out.codes, k_out.scales, k_mean, vt, v_scale, v_mean};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("seq_mean", &seq_mean, "mean over the sequence, fp32 [B, H, D]");
  m.def("quant_int8", &quant_int8, "INT8 per-warp / per-thread quantization with fused mean subtraction");
  m.def("quant_v_fp8", &quant_v_fp8, "FP8 e4m3 per-channel V, transposed and permuted for the mma");
  m.def("quant_qkv", &quant_qkv, "Q and K to INT8 (K smoothed), V to FP8 or not at all: one call's quantization in three launches");
}

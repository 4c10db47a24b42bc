// Entry point of the sm90 attention launcher: checks the problem and picks the head-dim instance. Torch-free.
#include "sm90/attention_params.h"

namespace sageattn::sm90 {
namespace detail {
template <int kHeadDim>
std::string launch_head_dim(const AttentionProblem& p, cudaStream_t stream);  // attention_hd{64,128}.cu
}  // namespace detail

std::string attention_forward(const AttentionProblem& p, cudaStream_t stream) {
  if (p.args.batch == 0 || p.args.len_q == 0 || p.args.heads_q == 0) return {};
  if (p.args.heads_kv <= 0 || p.args.heads_q % p.args.heads_kv != 0) return "heads_q must be a multiple of heads_kv";
  if (p.args.len_k <= 0) return "the sm90 kernel needs at least one key (callers handle empty K)";
  switch (p.head_dim) {
    case 64:
      return detail::launch_head_dim<64>(p, stream);
    case 128:
      return detail::launch_head_dim<128>(p, stream);
    default:
      return "the sm90 kernel serves head dims 64 and 128, got " + std::to_string(p.head_dim);
  }
}

}  // namespace sageattn::sm90

// Head dim 128 instances of the sm90 attention kernel.
#include "sm90/attention_launch.cuh"

namespace sageattn::sm90::detail {
template std::string launch_head_dim<128>(const AttentionProblem& p, cudaStream_t stream);
}  // namespace sageattn::sm90::detail

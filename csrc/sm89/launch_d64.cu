// sm89 kernels for head dim 64.
#define SAGE_SM89_INSTANTIATE 64
#include "sm89/launch_sm89.cuh"

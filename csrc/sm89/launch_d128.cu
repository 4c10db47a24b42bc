// sm89 kernels for head dim 128.
#define SAGE_SM89_INSTANTIATE 128
#include "sm89/launch_sm89.cuh"

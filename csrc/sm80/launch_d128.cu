// sm80 kernels for head dim 128.
#define SAGE_SM80_INSTANTIATE 128
#include "sm80/launch_sm80.cuh"
